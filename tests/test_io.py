"""tomoflow.io: round trips with voxel size, MRC modes, FEI headers, the real needle, bad input."""

from __future__ import annotations

import os
import re

import mrcfile
import numpy as np
import pytest
import tifffile

from tomoflow import io
from tomoflow.errors import InputError

ONE_LINE_ERROR = re.compile(r"^[^\n]+: [^\n]+\. Fix: [^\n]+$")


def assert_clear_error(exc: pytest.ExceptionInfo, path) -> None:
    msg = str(exc.value)
    assert ONE_LINE_ERROR.match(msg), msg
    assert str(path) in msg


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".mrc", ".tif"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_volume_round_trip_keeps_data_and_voxel_size(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((5, 7, 9)) * 200).astype(dtype)
    path = tmp_path / f"v{suffix}"
    io.write_volume(path, data, 0.37)
    back, voxel = io.read_volume(path)
    np.testing.assert_array_equal(back, data)
    # MRC-2014 has no unsigned 8-bit mode: mrcfile widens uint8 to uint16 (mode 6), values kept.
    assert back.dtype == (np.uint16 if (suffix, dtype) == (".mrc", np.uint8) else dtype)
    assert voxel == pytest.approx(0.37, rel=1e-6)
    slab, voxel2 = io.read_slab(path, 2, 4)
    np.testing.assert_array_equal(slab, data[2:4])
    assert voxel2 == pytest.approx(0.37, rel=1e-6)
    rows, _ = io.read_slab(path, 3, 6, axis=1)  # sinogram rows of every image
    np.testing.assert_array_equal(rows, data[:, 3:6])


def test_tiff_carries_imagej_nm_metadata_read_by_tifffile(tmp_path):
    path = tmp_path / "labels.tif"
    io.write_labels(path, np.zeros((3, 4, 5), np.uint8), (0.5, 0.25, 0.25))
    with tifffile.TiffFile(path) as tif:
        meta = tif.imagej_metadata
        assert meta["unit"] == "nm"
        assert meta["spacing"] == pytest.approx(0.5)
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.25, rel=1e-6)


def test_mrc_header_voxel_size_in_angstrom(tmp_path):
    path = tmp_path / "v.mrc"
    io.write_volume(path, np.zeros((2, 3, 4), np.float32), 0.12)
    with mrcfile.open(path) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(1.2, rel=1e-6)
        assert float(mrc.voxel_size.z) == pytest.approx(1.2, rel=1e-6)


@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6)])
def test_reads_mrc_modes(tmp_path, dtype, mode):
    data = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(dtype)
    path = tmp_path / "s.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 5.0
    assert mrcfile.open(path).header.mode == mode
    ts = io.read_tilt_series(path, angles=[-10, 0, 10])
    np.testing.assert_array_equal(ts.data, data.astype(np.float32))
    assert ts.pixel_size_nm == pytest.approx(0.5)
    assert ts.data.dtype == np.float32


def _fei_legacy_mrc(path, data_int16, angles):
    """An MRC like FEI's: int16 with -32768 offset, 1024 × 128-byte extended header, no EXTTYP."""
    records = np.zeros((1024, 32), "<f4")
    records[: len(angles), 0] = angles
    with mrcfile.new(path) as mrc:
        mrc.set_data(data_int16)
        mrc.set_extended_header(np.frombuffer(records.tobytes(), dtype="V1"))
    # FEI files carry no EXTTYP and no MAP id: clear both as the microscope does.
    with open(path, "r+b") as fh:
        fh.seek(104)
        fh.write(b"\0\0\0\0")
        fh.seek(208)
        fh.write(b"\0\0\0\0")


def test_fei_extended_header_angles_and_unsigned_counts(tmp_path):
    counts = np.array([[[0, 100], [40000, 65535]]] * 3, dtype=np.int64)
    stored = (counts - 32768).astype(np.int16)
    path = tmp_path / "fei.mrc"
    _fei_legacy_mrc(path, stored, [-60.0, 0.0, 60.0])
    ts = io.read_tilt_series(path, pixel_size_nm=1.5)
    np.testing.assert_array_equal(ts.data, counts.astype(np.float32))
    np.testing.assert_array_equal(ts.angles_deg, [-60.0, 0.0, 60.0])
    assert ts.angles_source == "fei-header"
    assert ts.pixel_size_nm == 1.5  # header uncalibrated -> sample table value
    rows, _ = io.read_slab(path, 1, 2, axis=1)  # a slab job's sinogram rows get the same correction
    np.testing.assert_array_equal(rows, counts[:, 1:2].astype(np.float32))


def test_angles_file_round_trip_and_beside_stack(tmp_path):
    angles = np.arange(-68, 69, 2.0)
    io.write_angles(tmp_path / "ts.rawtlt", angles)
    np.testing.assert_allclose(io.read_angles(tmp_path / "ts.rawtlt"), angles)
    io.write_volume(tmp_path / "ts.mrc", np.ones((angles.size, 4, 6), np.float32), 0.4)
    ts = io.read_tilt_series(tmp_path / "ts.mrc")
    np.testing.assert_allclose(ts.angles_deg, angles)
    assert io.preflight_tilt_series(tmp_path / "ts.mrc") == (angles.size, 4, 6)


def test_tiff_tilt_series_with_angles(tmp_path):
    data = np.random.default_rng(1).random((4, 8, 8)).astype(np.float32)
    path = tmp_path / "ts.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    ts = io.read_tilt_series(path, angles=[-30, -10, 10, 30], pixel_size_nm=2.0)
    np.testing.assert_array_equal(ts.data, data)
    assert ts.pixel_size_nm == 2.0


def test_json_and_tsv_round_trip(tmp_path):
    import pandas as pd

    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": float("inf")}
    io.write_json(tmp_path / "x.json", obj)
    back = io.read_json(tmp_path / "x.json")
    assert back["a"] == 1.5 and back["b"] == [0, 1, 2] and np.isnan(back["c"]) and np.isinf(back["d"])
    df = pd.DataFrame({"angle_deg": [-2.0, 0.0], "shift_x_px": [0.25, 0.0]})
    io.write_tsv(tmp_path / "t.tsv", df)
    pd.testing.assert_frame_equal(io.read_tsv(tmp_path / "t.tsv"), df, check_dtype=False)


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(ValueError):
        io.write_volume(target, np.zeros((4, 4)), 1.0)  # 2-D: refused
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the real needle
def test_real_needle_reads_with_angles_and_positive_counts(needle_dir):
    ts = io.read_tilt_series(needle_dir / "HAADF.mrc", angles=needle_dir / "HAADF.rawtlt", pixel_size_nm=3.36)
    assert ts.data.shape == (77, 256, 256)
    np.testing.assert_allclose(ts.angles_deg, np.arange(-76, 77, 2.0))
    assert ts.pixel_size_nm == 3.36  # the header says 1 Å (uncalibrated)
    # FEI signed storage undone: background near 32768 - 31885 ≈ 880 counts, never negative.
    assert ts.data.min() >= 0
    background = np.percentile(ts.data, 5)
    assert 500 < background < 1500
    assert ts.data.max() > 60000
    # the FEI extended header gives the same angles without the .rawtlt
    ts2 = io.read_tilt_series(needle_dir / "HAADF.mrc", pixel_size_nm=3.36)
    np.testing.assert_array_equal(ts2.angles_deg, ts.angles_deg)
    assert ts2.angles_source == "fei-header"


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def good_stack(tmp_path):
    path = tmp_path / "ts.mrc"
    io.write_volume(path, np.ones((5, 8, 8), np.float32), 0.4)
    io.write_angles(tmp_path / "ts.rawtlt", [-40, -20, 0, 20, 40])
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mrc"
    with pytest.raises(InputError, match="not found") as exc:
        io.read_tilt_series(path, angles=[0.0])
    assert_clear_error(exc, path)


def test_truncated_mrc(good_stack):
    size = os.path.getsize(good_stack)
    with open(good_stack, "r+b") as fh:
        fh.truncate(size - 100)
    for reader in (lambda: io.read_tilt_series(good_stack), lambda: io.preflight_tilt_series(good_stack)):
        with pytest.raises(InputError, match="truncated|corrupt") as exc:
            reader()
        assert_clear_error(exc, good_stack)


def test_corrupt_mrc(tmp_path):
    path = tmp_path / "junk.mrc"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError) as exc:
        io.read_tilt_series(path, angles=[0.0])
    assert_clear_error(exc, path)


def test_corrupt_tiff(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + b"\x07" * 500)
    with pytest.raises(InputError, match="TIFF") as exc:
        io.read_volume(path)
    assert_clear_error(exc, path)


def test_wrong_angle_count(good_stack, tmp_path):
    io.write_angles(tmp_path / "short.tlt", [-20, 0, 20])
    for reader in (io.read_tilt_series, io.preflight_tilt_series):
        with pytest.raises(InputError, match="3 tilt angles for 5 images") as exc:
            reader(good_stack, angles=tmp_path / "short.tlt")
        assert_clear_error(exc, tmp_path / "short.tlt")


def test_nan_pixels(tmp_path):
    data = np.ones((3, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = tmp_path / "nan.mrc"
    io.write_volume(path, data, 0.4)
    with pytest.raises(InputError, match=r"NaN/Inf pixel\(s\), first at index \(1, 2, 3\)") as exc:
        io.read_tilt_series(path, angles=[-1, 0, 1])
    assert_clear_error(exc, path)


def test_not_3d(tmp_path):
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.ones((8, 8), np.float32))
    with pytest.raises(InputError, match="3-D") as exc:
        io.read_tilt_series(path, angles=[0.0], pixel_size_nm=1.0)
    assert_clear_error(exc, path)


@pytest.mark.parametrize(
    "angles,pattern",
    [([-100, 0, 100], "within ±90°"), ([0, -20, 20], "not strictly monotonic"), ([-20, 0, 0], "not strictly monotonic")],
)
def test_bad_angles(tmp_path, angles, pattern):
    path = tmp_path / "a.tlt"
    path.write_text("\n".join(str(a) for a in angles))
    with pytest.raises(InputError, match=pattern) as exc:
        io.read_angles(path)
    assert_clear_error(exc, path)


def test_angle_file_with_text(tmp_path):
    path = tmp_path / "a.tlt"
    path.write_text("-10\nabc\n10\n")
    with pytest.raises(InputError, match="line 2 is not a number") as exc:
        io.read_angles(path)
    assert_clear_error(exc, path)


def test_no_pixel_size(tmp_path):
    path = tmp_path / "ts.tif"
    tifffile.imwrite(path, np.ones((2, 4, 4), np.float32), photometric="minisblack")
    with pytest.raises(InputError, match="no pixel size") as exc:
        io.read_tilt_series(path, angles=[-5, 5])
    assert_clear_error(exc, path)


def test_labels_out_of_range(tmp_path):
    path = tmp_path / "lab.tif"
    io.write_labels(path, np.array([[[0, 1], [2, 5]]], np.uint8), 1.0)
    with pytest.raises(InputError, match=r"label values \[5\] outside the class list 0..2") as exc:
        io.read_labels(path, 3)
    assert_clear_error(exc, path)


# --------------------------------------------------------------------------- lazy probes (start-up checks)
def test_file_kind_reads_magic_bytes_not_suffixes(tmp_path):
    from tomoflow.io.probe import file_kind

    io.write_volume(tmp_path / "a.tif", np.zeros((2, 4, 4), np.float32), 1.0)
    io.write_volume(tmp_path / "b.mrc", np.zeros((2, 4, 4), np.float32), 1.0)
    (tmp_path / "a.tif").rename(tmp_path / "tiff_named.mrc")
    (tmp_path / "c.mrc").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (tmp_path / "d.tlt").write_text("1.0\n2.0\n")
    assert [file_kind(tmp_path / n) for n in ("tiff_named.mrc", "b.mrc", "c.mrc", "d.tlt")] == ["tiff", "mrc", "an HDF5 file", "text"]
    with pytest.raises(InputError, match=r"a TIFF file with a \.mrc suffix\. Fix: rename it to \.tif"):
        io.read_volume(tmp_path / "tiff_named.mrc")
    with pytest.raises(InputError, match="not an MRC file: the content is an HDF5 file"):
        io.read_volume(tmp_path / "c.mrc")


def test_probe_stack_gives_header_geometry_without_reading_data(tmp_path):
    from tomoflow.io.probe import probe_stack

    data = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    io.write_volume(tmp_path / "v.mrc", data, 0.5)
    io.write_volume(tmp_path / "v.tif", data, 0.5)
    for name in ("v.mrc", "v.tif"):
        info = probe_stack(tmp_path / name)
        assert info.shape == (3, 5, 7) and info.dtype == "float32" and info.voxel_size_nm == pytest.approx(0.5)
    raw = (tmp_path / "v.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[:-4])  # one float32 short: 1024 + 105·4 − 4 bytes
    with pytest.raises(InputError, match=r"truncated MRC file: the header describes 3×5×7 values of mode 2 \(1,444 bytes\) but the file holds 1,440 bytes"):
        probe_stack(tmp_path / "cut.mrc")


def test_probe_refuses_rgb_and_mixed_tiffs_and_samples_label_values(tmp_path):
    import tifffile

    from tomoflow.io.probe import label_values_problem, probe_stack

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((1, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"RGB/multi-channel TIFF \(3 samples per pixel"):
        probe_stack(tmp_path / "rgb.tif")
    with pytest.raises(InputError, match="RGB/multi-channel"):
        io.read_volume(tmp_path / "rgb.tif")  # the reader refuses it too (was read as 8 slices of 8×3)
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(np.zeros((8, 8), np.uint8))
        tw.write(np.zeros((8, 6), np.uint8))
    with pytest.raises(InputError, match="pages of different shapes: image 1 is 8×8 px, image 2 is 8×6 px"):
        probe_stack(tmp_path / "mixed.tif")
    lab = np.zeros((9, 4, 4), np.uint8)
    lab[8, 0, 0] = 7  # in the last section: sampled (first, middle, last)
    io.write_labels(tmp_path / "lab.tif", lab, 1.0)
    assert label_values_problem(tmp_path / "lab.tif", 3) == "label value(s) 7 in section 9, outside the class indices 0..2"
    assert label_values_problem(tmp_path / "lab.tif", 8) is None


def test_truncated_keras_model_is_named_as_such(tmp_path):
    import zipfile

    pytest.importorskip("keras")
    from tomoflow.io.models import load_model

    p = tmp_path / "unet.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("config.json", "{}" * 2000)
    p.write_bytes(p.read_bytes()[:-30])  # cut into the zip's central directory
    with pytest.raises(InputError, match=r"unet\.keras: not a complete \.keras archive \(truncated or not a zip file\)\. Fix: re-copy"):
        load_model(p)
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "none.keras")
