"""MLEM/OSEM/SIRT/FBP reconstruction: geometry on analytic phantoms, independent references, slabs, bad input."""

from __future__ import annotations

import astra
import numpy as np
import pytest

from tomoflow.errors import InputError
from tomoflow.projector import forward_project, projection_geometry
from tomoflow.recon import (
    angle_weights,
    check_signal,
    combine_misfit,
    misfit_figure,
    neighbour_correlation,
    orthoslices_figure,
    reconstruct,
    reconstruct_slab,
    subset_order,
)

THICK, N_DET = 40, 56
WIDE = np.arange(-90.0, 90.0, 2.0)           # 90 tilts over 180°: no missing wedge
WEDGE = np.arange(-68.0, 68.1, 2.0)          # 69 tilts, the demo's ±68°


def _phantom(n_slices: int = 3, thick: int = THICK, n_det: int = N_DET) -> np.ndarray:
    """Asymmetric objects: a disc up-right, a bar down-left, moving with the slice index (no symmetry)."""
    zz, xx = np.mgrid[:thick, :n_det]
    vol = np.zeros((n_slices, thick, n_det), np.float32)
    for y in range(n_slices):
        vol[y][(zz - 12.0) ** 2 + (xx - 38.0 - y) ** 2 <= 25] = 1.0
        vol[y, 26:31, 9 + y:21 + y] = 2.0
    return vol


def _centroids(vol: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Centroids (z, x) of each object of slice 0, measured in a 3-px dilated window around it."""
    from scipy import ndimage

    lab, n = ndimage.label(ref[0] > 0)
    out = []
    for i in range(1, n + 1):
        win = ndimage.binary_dilation(lab == i, iterations=3)
        w = np.where(win, np.clip(vol[0], 0, None), 0)
        out.append(ndimage.center_of_mass(w))
    return np.array(out)


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("center", [0.0, 2.5])
@pytest.mark.parametrize("angles", [WIDE, WEDGE], ids=["180deg", "wedge68"])
def test_mlem_geometry_matches_phantom(center: float, angles: np.ndarray) -> None:
    """Objects come back where they were: no flips, no half-pixel shifts, also with a centre offset."""
    vol = _phantom()
    ts = forward_project(vol, angles, center_offset_px=center)
    rec = reconstruct(ts, angles, thickness_px=THICK, iterations=60, center_offset_px=center, threads=2)
    assert rec.volume.shape == vol.shape and rec.volume.dtype == np.float32
    np.testing.assert_allclose(_centroids(rec.volume, vol), _centroids(vol, vol), atol=0.06)
    # Orientation: the reconstruction correlates with the phantom, not with any of its mirror images.
    c = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    good = c(rec.volume, vol)
    assert good > 0.9
    for flipped in (vol[:, ::-1], vol[:, :, ::-1], vol[:, ::-1, ::-1]):
        assert c(rec.volume, flipped) < good - 0.3
    # MLEM conserves the measured counts: the reconstruction has the phantom's mass.
    assert rec.volume.sum() == pytest.approx(vol.sum(), rel=0.02)


def test_zero_tilt_projection_of_reconstruction_reproduces_data() -> None:
    """Units: the volume is counts per pixel of path length, so its 0° projection is the 0° image."""
    vol = _phantom() * 1000.0
    ts = forward_project(vol, WEDGE)
    rec = reconstruct(ts, WEDGE, thickness_px=THICK, iterations=50)
    i0 = int(np.argmin(np.abs(WEDGE)))
    np.testing.assert_allclose(rec.volume.sum(axis=(1, 2)), ts[i0].sum(axis=1), rtol=2e-3)
    np.testing.assert_allclose(rec.volume.sum(axis=1), ts[i0], atol=0.05 * ts[i0].max())


# --------------------------------------------------------------------------- independent references
def _system_matrix(angles: np.ndarray, thick: int, n_det: int, center: float) -> np.ndarray:
    vg = astra.create_vol_geom(thick, n_det)
    pid = astra.create_projector("line", projection_geometry(angles, n_det, center), vg)
    mid = astra.projector.matrix(pid)
    w = astra.matrix.get(mid).toarray().astype(np.float64)
    astra.matrix.delete(mid)
    astra.projector.delete(pid)
    return w


def test_mlem_equals_dense_matrix_mlem() -> None:
    """Same numbers as x ← x·Wᵀ(y/Wx)/Wᵀ1 with ASTRA's sparse matrix W, in float64 NumPy."""
    thick, n_det, center, n_it = 20, 28, 1.0, 15
    angles = np.arange(-70.0, 71.0, 5.0)
    rng = np.random.default_rng(4)
    vol = _phantom(1, thick, n_det)[:, :, :] * 0
    vol[0, 4:16, 6:22] = rng.random((12, 16)).astype(np.float32) + 0.2
    ts = forward_project(vol, angles, center_offset_px=center)
    w = _system_matrix(angles, thick, n_det, center)
    y = ts[:, 0, :].ravel().astype(np.float64)
    sens = w.T @ np.ones_like(y)
    x = np.full(thick * n_det, y.sum() / sens.sum())
    ref_misfit = []
    for _ in range(n_it):
        x = x * (w.T @ np.where(w @ x > 0, y / np.where(w @ x > 0, w @ x, 1), 0)) / np.where(sens > 0, sens, np.inf)
        ref_misfit.append(np.linalg.norm(w @ x - y) / np.linalg.norm(y))
    rec = reconstruct(ts, angles, thickness_px=thick, iterations=n_it, center_offset_px=center, min_tilts=5)
    np.testing.assert_allclose(rec.volume[0].ravel(), x, rtol=2e-3, atol=2e-4 * x.max())
    np.testing.assert_allclose(rec.misfit, ref_misfit, rtol=2e-3)


def test_osem_equals_dense_matrix_osem_with_partly_seen_voxels() -> None:
    """OSEM = the dense float64 update on each subset, with voxels a subset cannot see left unchanged.

    A 14 px centre offset on a narrow detector leaves the right-hand columns visible to few tilts only,
    so some subsets miss them (checked), which is the case the keep rule exists for.
    """
    from tomoflow.recon import sensitivities

    thick, n_det, center, n_sub, passes = 16, 24, 14.0, 4, 5
    angles = np.arange(-70.0, 71.0, 5.0)
    rng = np.random.default_rng(8)
    vol = (rng.random((1, thick, n_det)) + 0.2).astype(np.float32)
    ts = forward_project(vol, angles, n_det=n_det, center_offset_px=center)
    groups = subset_order(angles, n_sub)
    perm = np.concatenate(groups)
    offsets = np.concatenate([[0], np.cumsum([g.size for g in groups])]).tolist()
    keep = sensitivities(thick, n_det, angles[perm], offsets, n_det, center, "line").keep
    assert any(k is not None for k in keep)
    w = _system_matrix(angles, thick, n_det, center)
    y = ts[:, 0, :].astype(np.float64)
    w3 = w.reshape(angles.size, n_det, -1)
    sens = w.T @ np.ones(w.shape[0])
    x = np.full(thick * n_det, y.sum() / sens.sum())
    for _ in range(passes):
        for g in groups:
            ws = w3[g].reshape(-1, w.shape[1])
            p = ws @ x
            ratio = np.where(p > 0, y[g].ravel() / np.where(p > 0, p, 1), 0)
            ss = ws.T @ np.ones(ws.shape[0])
            factor = np.where(ss > 0, (ws.T @ ratio) / np.where(ss > 0, ss, 1), np.where(sens > 0, 1.0, 0.0))
            x = x * factor
    rec = reconstruct(ts, angles, thickness_px=thick, algorithm="osem", subsets=n_sub, iterations=passes,
                      center_offset_px=center, min_tilts=5)
    np.testing.assert_allclose(rec.volume[0].ravel(), x, rtol=2e-3, atol=2e-4 * x.max())


def test_sirt_equals_astra_sirt() -> None:
    """Own SIRT loop = ASTRA's CPU SIRT with MinConstraint 0 (same projector, same geometry)."""
    vol = _phantom(1)
    center, n_it = 1.5, 20
    ts = forward_project(vol, WEDGE, center_offset_px=center)
    rec = reconstruct(ts, WEDGE, thickness_px=THICK, algorithm="sirt", iterations=n_it, center_offset_px=center)
    vg = astra.create_vol_geom(THICK, N_DET)
    pg = projection_geometry(WEDGE, N_DET, center)
    pid = astra.create_projector("line", pg, vg)
    sid = astra.data2d.create("-sino", pg, ts[:, 0, :])
    rid = astra.data2d.create("-vol", vg, 0.0)
    cfg = astra.astra_dict("SIRT")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, option={"MinConstraint": 0.0})
    aid = astra.algorithm.create(cfg)
    astra.algorithm.run(aid, n_it)
    ref = astra.data2d.get(rid)
    astra.algorithm.delete(aid)
    astra.data2d.delete([sid, rid])
    astra.projector.delete(pid)
    np.testing.assert_allclose(rec.volume[0], ref, atol=1e-4 * ref.max())
    assert np.all(np.diff(rec.misfit) < 0)


def test_fbp_equals_astra_fbp_on_full_range() -> None:
    """Own ramp filter + Δθ weights + ASTRA BP = ASTRA's CPU FBP (parallel geometry, 180°)."""
    vol = _phantom(1, N_DET, N_DET)
    angles = np.arange(0.0, 180.0, 1.0)
    ts = forward_project(vol, angles)
    rec = reconstruct(ts, angles, algorithm="fbp")
    assert rec.misfit.size == 0
    vg = astra.create_vol_geom(N_DET, N_DET)
    pg = astra.create_proj_geom("parallel", 1.0, N_DET, np.deg2rad(angles))
    pid = astra.create_projector("line", pg, vg)
    sid = astra.data2d.create("-sino", pg, ts[:, 0, :])
    rid = astra.data2d.create("-vol", vg, 0.0)
    cfg = astra.astra_dict("FBP")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
    aid = astra.algorithm.create(cfg)
    astra.algorithm.run(aid)
    ref = astra.data2d.get(rid)
    astra.algorithm.delete(aid)
    astra.data2d.delete([sid, rid])
    astra.projector.delete(pid)
    np.testing.assert_allclose(rec.volume[0], ref, atol=2e-3 * ref.max())


def test_angle_weights_and_subsets() -> None:
    np.testing.assert_allclose(angle_weights(np.arange(0, 180, 4.0)), np.pi / 45)
    w = angle_weights([10.0, -10.0, 0.0, 30.0])
    np.testing.assert_allclose(np.rad2deg(w), [15.0, 10.0, 10.0, 20.0])
    groups = subset_order(np.arange(20.0)[::-1], 4)
    assert sorted(np.concatenate(groups).tolist()) == list(range(20))
    assert [len(g) for g in groups] == [5, 5, 5, 5]
    # Bit-reversed subset order: starting ranks 0, 2, 1, 3 (angles reversed: index 19 is rank 0).
    assert [int(g[0]) for g in groups] == [19, 17, 18, 16]


# --------------------------------------------------------------------------- OSEM / misfit
def test_osem_one_subset_is_mlem_and_many_subsets_converge_faster() -> None:
    vol = _phantom(2)
    ts = forward_project(vol, WEDGE)
    mlem = reconstruct(ts, WEDGE, thickness_px=THICK, iterations=50, threads=2)
    one = reconstruct(ts, WEDGE, thickness_px=THICK, algorithm="osem", subsets=1, iterations=50, threads=2)
    np.testing.assert_array_equal(one.volume, mlem.volume)
    osem = reconstruct(ts, WEDGE, thickness_px=THICK, algorithm="osem", subsets=8, iterations=8, threads=2)
    assert osem.misfit.shape == (8,)
    assert osem.misfit[-1] <= mlem.misfit[-1]       # 8 passes of 8 subsets reach MLEM-50's misfit
    assert osem.misfit[1] > osem.misfit[-1]


def test_misfit_is_the_relative_residual_of_the_result() -> None:
    vol = _phantom(2)
    ts = forward_project(vol, WEDGE, center_offset_px=-1.0)
    seen = []
    for alg in ("mlem", "osem", "sirt"):
        rec = reconstruct(ts, WEDGE, thickness_px=THICK, algorithm=alg, iterations=6, subsets=4,
                          center_offset_px=-1.0, progress=lambda k, m: seen.append((k, m)))
        p = forward_project(rec.volume, WEDGE, center_offset_px=-1.0)
        expected = np.linalg.norm((p - ts).astype(np.float64)) / np.linalg.norm(ts.astype(np.float64))
        assert rec.misfit.shape == (6,)
        assert rec.misfit[-1] == pytest.approx(expected, rel=1e-4)
        assert rec.misfit[-1] < rec.misfit[0]
        assert [k for k, _ in seen[-6:]] == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose([m for _, m in seen[-6:]], rec.misfit)


# --------------------------------------------------------------------------- slabs, threads, robustness
def test_slabs_and_threads_give_the_single_job_volume() -> None:
    vol = _phantom(7)
    ts = forward_project(vol, WEDGE)
    whole = reconstruct(ts, WEDGE, thickness_px=THICK, iterations=10, threads=1)
    parts, rss, dss = [], [], []
    for i in range(3):
        (a, b), r = reconstruct_slab(lambda s, e: ts[:, s:e], ts.shape[1], i, 3, WEDGE,
                                     thickness_px=THICK, iterations=10, threads=2)
        assert r.volume.shape[0] == b - a
        parts.append(r.volume)
        rss.append(r.residual_ss)
        dss.append(r.data_ss)
    np.testing.assert_array_equal(np.concatenate(parts), whole.volume)
    np.testing.assert_allclose(combine_misfit(rss, dss), whole.misfit, rtol=1e-10)
    # More slabs than slices: trailing empty slabs are valid jobs with an empty volume.
    (a, b), empty = reconstruct_slab(lambda s, e: ts[:, s:e], 2, 3, 4, WEDGE, thickness_px=THICK, iterations=3)
    assert (a, b) == (2, 2) and empty.volume.shape == (0, THICK, N_DET)


def test_negative_and_zero_data_stay_finite() -> None:
    """Background noise around 0 (negatives), empty rays and empty slices: no NaN/Inf, no negatives."""
    rng = np.random.default_rng(5)
    vol = _phantom(3)
    vol[1] = 0.0                                          # an empty slice
    ts = forward_project(vol, WEDGE, center_offset_px=4.0)  # rays that miss the object: exact zeros
    ts += rng.normal(0, 0.05, ts.shape).astype(np.float32)
    ts[:, :, :3] = 0.0
    before = ts.copy()
    for alg in ("mlem", "osem", "sirt", "fbp"):
        rec = reconstruct(ts, WEDGE, thickness_px=THICK, algorithm=alg, iterations=5, center_offset_px=4.0)
        np.testing.assert_array_equal(ts, before)          # the caller's data are never modified
        assert np.all(np.isfinite(rec.volume))
        if alg != "fbp":
            assert rec.volume.min() >= 0.0
            assert np.all(np.isfinite(rec.misfit))
    assert rec.info["algorithm"] == "fbp"


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_input_error() -> None:
    vol = _phantom(2)
    ts = forward_project(vol, WEDGE)
    with pytest.raises(InputError, match="only 5 tilt images"):
        reconstruct(ts[:5], WEDGE[:5])
    with pytest.raises(InputError, match="68 tilt angles for 69 images"):
        reconstruct(ts, WEDGE[:-1])
    with pytest.raises(InputError, match="look like radians"):
        reconstruct(ts, np.deg2rad(WEDGE))
    with pytest.raises(InputError, match="repeated tilt angle"):
        reconstruct(ts, np.r_[WEDGE[:-1], WEDGE[0]])
    bad = ts.copy()
    bad[3, 0, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        reconstruct(bad, WEDGE)
    with pytest.raises(InputError, match="recon.algorithm"):
        reconstruct(ts, WEDGE, algorithm="art")
    with pytest.raises(InputError, match="recon.subsets"):
        reconstruct(ts, WEDGE, algorithm="osem", subsets=0)
    with pytest.raises(InputError, match="recon.projector"):
        reconstruct(ts, WEDGE, projector="joseph")
    if not astra.use_cuda():
        with pytest.raises(InputError, match="needs an ASTRA CUDA device"):
            reconstruct(ts, WEDGE, projector="cuda")
    with pytest.raises(InputError, match="no positive signal"):
        reconstruct(-np.abs(ts) - 1, WEDGE)


def test_all_noise_tilt_series_is_rejected() -> None:
    rng = np.random.default_rng(6)
    noise = rng.poisson(100.0, (69, 16, 64)).astype(np.float32)
    assert abs(neighbour_correlation(noise, WEDGE)) < 0.1
    with pytest.raises(InputError, match="pure noise"):
        reconstruct(noise, WEDGE)
    # The same noise on top of a real (weak) specimen passes.
    signal = forward_project(_phantom(16, 40, 64), WEDGE) * 10.0 + noise
    assert neighbour_correlation(signal, WEDGE) > 0.5


@pytest.mark.parametrize("value", [7.0, 0.1, 1e-3, 3.3, 12345.678, 1e30])
@pytest.mark.parametrize("shape", [(69, 16, 64), (69, 1, 33), (69, 7, 129), (69, 64, 17)])
def test_constant_tilt_series_is_rejected_exactly(value: float, shape: tuple[int, int, int]) -> None:
    """Constant stacks are refused by an exact test, not by the correlation of blur rounding noise."""
    data = np.full(shape, value, np.float32)
    assert neighbour_correlation(data, WEDGE) == 0.0
    with pytest.raises(InputError, match="constant"):
        check_signal(data, WEDGE)
    # One constant image among real ones is refused by the tilt-series check, naming its index.
    ts = forward_project(_phantom(shape[1], 40, shape[2]), WEDGE) + 1.0
    ts[5] = value
    with pytest.raises(InputError, match="tilt index 5"):
        reconstruct(ts, WEDGE)


def test_real_needle_reconstructs_without_nans(needle_dir) -> None:
    """The real FEI HAADF stack (int16 offset counts, tilt axis along x) reconstructs finite and ≥ 0."""
    from tomoflow.io import read_tilt_series

    ts = read_tilt_series(needle_dir / "HAADF.mrc", pixel_size_nm=3.36)
    data = np.ascontiguousarray(ts.data.transpose(0, 2, 1))       # tilt axis along x -> along y
    assert data.min() > 0                                          # +32768 applied by tomoflow.io
    assert neighbour_correlation(data, ts.angles_deg) > 0.5
    sub = data[:, 124:128, :]
    sub = sub - np.percentile(sub, 5)                              # background ~0: half the vacuum is < 0
    seen = []
    for alg in ("mlem", "osem"):
        rec = reconstruct(sub, ts.angles_deg, algorithm=alg, iterations=6, subsets=4, thickness_px=128,
                          threads=2, progress=lambda k, m: seen.append(m))
        assert np.all(np.isfinite(rec.volume)) and rec.volume.min() >= 0
        # Unaligned real data are inconsistent: MLEM lowers the Poisson deviance, not necessarily the L2
        # misfit, so only require a finite, sane misfit.
        assert np.all(np.isfinite(rec.misfit)) and np.all(rec.misfit < 1.0)
        assert rec.info["clipped_fraction"] > 0.01


# --------------------------------------------------------------------------- figures
def test_figures() -> None:
    import pandas as pd

    vol = _phantom(5)
    fig = orthoslices_figure(vol, 0.4, title="demo")
    assert len(fig.axes) == 3
    assert any("nm" in t.get_text() for ax in fig.axes for t in ax.texts)
    table = pd.DataFrame({"slab": [0, 0, 1, 1, "all", "all"], "iteration": [1, 2] * 3,
                          "misfit": [0.5, 0.2, 0.4, 0.1, 0.45, 0.15]})
    fig = misfit_figure(table)
    assert len(fig.axes[0].lines) == 3


# --------------------------------------------------------------------------- TomoPy (conda-forge only)
@pytest.mark.tomopy
@pytest.mark.parametrize("thick", [N_DET, THICK])
def test_tomopy_mlem_equals_astra_mlem(thick: int) -> None:
    pytest.importorskip("tomopy")
    vol = _phantom(2, thick, N_DET)
    ts = forward_project(vol, WEDGE, center_offset_px=1.0)
    a = reconstruct(ts, WEDGE, thickness_px=thick, iterations=20, center_offset_px=1.0)
    t = reconstruct(ts, WEDGE, thickness_px=thick, iterations=20, center_offset_px=1.0, backend="tomopy")
    assert t.volume.shape == a.volume.shape
    rms = np.sqrt(np.mean((t.volume - a.volume) ** 2))
    assert rms < 1e-3 * a.volume.max()
    np.testing.assert_allclose(t.misfit, a.misfit, rtol=1e-2)


def test_tomopy_backend_missing_is_a_clear_error() -> None:
    try:
        import tomopy  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="TomoPy is not importable"):
            reconstruct(forward_project(_phantom(1), WEDGE), WEDGE, backend="tomopy", iterations=2)
    else:
        pytest.skip("TomoPy is installed here")


# --------------------------------------------------------------------------- slab jobs (scatter/gather)
def test_slab_jobs_gathered_equal_single_job(tmp_path, caplog) -> None:
    """What the two rules do, through the library: slab jobs on a stack file, gather, misfit table."""
    import logging

    from tomoflow import io
    from tomoflow.recon import ReconSettings, reconstruct_slab_job, tomogram_outputs
    from tomoflow.slabs import gather_slabs

    vol = _phantom(5) * 100.0
    ts = forward_project(vol, WEDGE)
    stack = str(tmp_path / "aligned.mrc")
    io.write_volume(stack, ts, 0.4)
    io.write_angles(tmp_path / "aligned.tlt", WEDGE)
    settings = ReconSettings(thickness_px=THICK, iterations=8, threads=2, where=stack)
    parts, tables = [], []
    with caplog.at_level(logging.INFO, logger="tomoflow"):
        for i in range(2):
            _, res, table = reconstruct_slab_job(lambda a, b: io.read_slab(stack, a, b, axis=1)[0],
                                                 io.volume_shape(stack), io.read_angles(tmp_path / "aligned.tlt"),
                                                 i, 2, settings)
            parts.append(str(tmp_path / f"slab_{i}.mrc"))
            io.write_volume(parts[-1], res.volume, 0.4)
            io.write_tsv(tmp_path / f"slab_{i}.tsv", table)
            tables.append(io.read_tsv(tmp_path / f"slab_{i}.tsv"))
    assert "iteration 8/8: relative misfit" in caplog.text
    got, voxel = gather_slabs(parts, io.read_volume, io.volume_shape, dtype=np.float32)
    ref = reconstruct(ts, WEDGE, thickness_px=THICK, iterations=8)
    assert voxel == pytest.approx(0.4)
    np.testing.assert_array_equal(got, ref.volume)
    table, fig1, fig2 = tomogram_outputs(got, 0.4, tables, "t: mlem")
    whole = table[(table["slab"].astype(str) == "all") & (table["iteration"] > 0)]["misfit"].to_numpy()
    np.testing.assert_allclose(whole, ref.misfit, rtol=1e-5)  # TSV keeps 6 significant digits
    assert len(fig1.axes) == 1 and len(fig2.axes) == 3


def test_slab_job_bad_angles_and_too_many_slabs() -> None:
    from tomoflow.recon import ReconSettings, reconstruct_slab_job

    ts = forward_project(_phantom(2) * 100.0, WEDGE)
    s = ReconSettings(where="aligned.mrc")
    with pytest.raises(InputError, match="67 tilt angles for the 69 images"):
        reconstruct_slab_job(lambda a, b: ts[:, a:b], ts.shape, WEDGE[:-2], 0, 1, s)
    with pytest.raises(InputError, match="recon.slabs.*3 slabs for 2 slices"):
        reconstruct_slab_job(lambda a, b: ts[:, a:b], ts.shape, WEDGE, 0, 3, s)
