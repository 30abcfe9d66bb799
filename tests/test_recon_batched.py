"""Batched (one sparse system matrix per slab) reconstruction against the per-slice ASTRA path and references."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from test_recon import _system_matrix  # the one dense ASTRA-matrix reference of the recon tests
from tomoflow.projector import forward_project, system_matrix_nnz
from tomoflow.recon import (
    ReconSettings,
    clear_matrix_cache,
    matrix_cache_stats,
    reconstruct,
    subset_layout,
    system_matrix,
)
from tomoflow.slabs import (
    batched_memory_mb,
    gather_slabs,
    matrix_memory_mb,
    matrix_nnz_estimate,
    slab_job_mem_mb,
)

WEDGE = np.arange(-68.0, 68.1, 2.0)  # 69 tilts


def _random_phantom(n_slices: int, thick: int, n_det: int, seed: int) -> np.ndarray:
    """Random blobs on a random background: no symmetry, every slice different."""
    rng = np.random.default_rng(seed)
    vol = (0.2 * rng.random((n_slices, thick, n_det))).astype(np.float32)
    zz, xx = np.mgrid[:thick, :n_det]
    for y in range(n_slices):
        for _ in range(4):
            cz, cx, r = rng.uniform(0.2, 0.8) * thick, rng.uniform(0.2, 0.8) * n_det, rng.uniform(2, 5)
            vol[y][(zz - cz) ** 2 + (xx - cx) ** 2 <= r * r] += rng.uniform(1, 3)
    return vol


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2) / np.mean(b.astype(np.float64) ** 2)))


@pytest.mark.parametrize("algorithm,subsets", [("mlem", 1), ("osem", 4), ("osem", 7), ("sirt", 1)])
@pytest.mark.parametrize("n_det,thick,center", [(33, 21, 1.5), (47, 47, -3.25), (40, 17, 0.0)])
def test_batched_equals_per_slice(algorithm: str, subsets: int, n_det: int, thick: int, center: float) -> None:
    """Same volume (relative RMS ≤ 1e-5) and misfit as ASTRA slice by slice: odd widths, centre offsets,
    noise with negative values (clipping), and more threads than one column block."""
    rng = np.random.default_rng(n_det)
    vol = _random_phantom(5, thick, n_det, seed=thick)
    ts = forward_project(vol, WEDGE, center_offset_px=center) + rng.normal(0, 0.05, (69, 5, n_det)).astype(np.float32)
    kw = dict(thickness_px=thick, algorithm=algorithm, subsets=subsets, iterations=12, center_offset_px=center,
              threads=2, signal_check=False)
    ref = reconstruct(ts, WEDGE, method="per_slice", **kw)
    got = reconstruct(ts, WEDGE, method="batched", **kw)
    assert ref.info["method"] == "per_slice" and got.info["method"] == "batched"
    assert got.volume.shape == ref.volume.shape and got.volume.dtype == np.float32
    assert _rel_rms(got.volume, ref.volume) <= 1e-5
    np.testing.assert_allclose(got.misfit, ref.misfit, rtol=1e-5)
    np.testing.assert_allclose(got.residual_ss, ref.residual_ss, rtol=1e-5)
    assert got.data_ss == pytest.approx(ref.data_ss, rel=1e-12)
    if algorithm != "sirt":
        assert got.info["clipped_fraction"] > 0 and got.volume.min() >= 0


def test_batched_mlem_equals_dense_float64_mlem() -> None:
    """Independent reference: x ← x·Wᵀ(y/Wx)/Wᵀ1 with ASTRA's matrix W densified, in float64."""
    thick, n_det, center, n_it = 19, 27, 0.75, 15
    angles = np.arange(-70.0, 71.0, 5.0)
    vol = _random_phantom(2, thick, n_det, seed=3)
    ts = forward_project(vol, angles, center_offset_px=center)
    w = _system_matrix(angles, thick, n_det, center)
    rec = reconstruct(ts, angles, thickness_px=thick, iterations=n_it, center_offset_px=center, min_tilts=5,
                      method="batched", signal_check=False)
    sens = w.T @ np.ones(w.shape[0])
    for y in range(2):
        b = ts[:, y, :].ravel().astype(np.float64)
        x = np.full(thick * n_det, b.sum() / sens.sum())
        for _ in range(n_it):
            p = w @ x
            x = x * (w.T @ np.where(p > 0, b / np.where(p > 0, p, 1), 0)) / np.where(sens > 0, sens, np.inf)
        np.testing.assert_allclose(rec.volume[y].ravel(), x, rtol=2e-3, atol=2e-4 * x.max())


def test_matrix_cache_hit_and_miss(tmp_path, caplog) -> None:
    """One build per geometry: a second slab or alignment round reuses it; a new centre offset rebuilds;
    a second process (cleared in-process cache) loads it from the cache folder."""
    clear_matrix_cache()
    vol = _random_phantom(3, 16, 24, seed=1)
    ts = forward_project(vol, WEDGE)
    s = ReconSettings(thickness_px=16, iterations=3, method="batched", signal_check=False, matrix_cache_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="tomoflow"):
        a = reconstruct(ts, WEDGE, s)
        assert matrix_cache_stats() == {"hits": 0, "misses": 1, "disk_hits": 0}
        assert a.info["matrix_build_s"] > 0
        b = reconstruct(ts[:, 1:], WEDGE, s)                       # another slab, same geometry
        assert matrix_cache_stats()["hits"] == 1
        assert b.info["matrix_build_s"] == 0
        reconstruct(ts, WEDGE, s, center_offset_px=0.5)            # another geometry
        assert matrix_cache_stats() == {"hits": 1, "misses": 2, "disk_hits": 0}
        reconstruct(ts, WEDGE, s, algorithm="osem", subsets=4)      # subset blocks: another key
        assert matrix_cache_stats()["misses"] == 3
        assert len(list(tmp_path.glob("sysmat_*.npz"))) == 3
        clear_matrix_cache()
        c = reconstruct(ts, WEDGE, s)
        assert matrix_cache_stats() == {"hits": 0, "misses": 1, "disk_hits": 1}
    np.testing.assert_array_equal(c.volume, a.volume)
    assert "in-process cache hit" in caplog.text and "loaded from" in caplog.text


def test_system_matrix_equals_astra_projection() -> None:
    """The cached blocks are ASTRA's matrix: A x equals ASTRA's forward projection, subsets in order."""
    clear_matrix_cache()
    thick, n_det, center = 13, 29, -1.5
    perm, offsets = subset_layout(WEDGE, 5)
    m = system_matrix(WEDGE[perm], offsets, n_det, thick, n_det, center, "line")
    assert m.nnz == system_matrix_nnz(thick, n_det, WEDGE, center_offset_px=center)
    x = _random_phantom(1, thick, n_det, seed=2)
    fp = forward_project(x, WEDGE, center_offset_px=center)[:, 0, :]
    got = np.concatenate([(b.T @ x[0].ravel()).reshape(-1, n_det) for b in m.blocks_t])
    np.testing.assert_allclose(got, fp[perm], rtol=1e-5, atol=1e-5 * fp.max())


def test_auto_falls_back_to_per_slice_when_the_matrix_does_not_fit(caplog) -> None:
    vol = _random_phantom(2, 16, 24, seed=4)
    ts = forward_project(vol, WEDGE)
    with caplog.at_level(logging.INFO, logger="tomoflow"):
        small = reconstruct(ts, WEDGE, thickness_px=16, iterations=3, signal_check=False, memory_budget_mb=0.01)
        assert small.info["method"] == "per_slice"
        assert "would not fit the memory budget of 0 MB" in caplog.text
        big = reconstruct(ts, WEDGE, thickness_px=16, iterations=3, signal_check=False, memory_budget_mb=1000)
        assert big.info["method"] == "batched"
        dd = reconstruct(ts, WEDGE, thickness_px=16, iterations=3, signal_check=False, projector="distance_driven")
        assert dd.info["method"] == "per_slice"
        assert "no system matrix for the 'distance_driven' projector" in caplog.text
        fbp = reconstruct(ts, WEDGE, thickness_px=16, algorithm="fbp", signal_check=False)
        assert fbp.info["method"] == "per_slice"
    assert _rel_rms(big.volume, small.volume) <= 1e-5


def test_alignment_reconstructor_uses_the_batched_path() -> None:
    """tomoflow.align's projection matching calls reconstruct(...) with its keyword style: batched by default."""
    from tomoflow.align.refine import sirt_reconstructor

    clear_matrix_cache()
    ts = forward_project(_random_phantom(4, 16, 32, seed=5), WEDGE)
    v1 = sirt_reconstructor(ts, WEDGE, 16, 5, 2)
    v2 = sirt_reconstructor(ts * 1.1, WEDGE, 16, 5, 2)        # the next round: same geometry
    assert matrix_cache_stats() == {"hits": 1, "misses": 1, "disk_hits": 0}
    ref = reconstruct(ts, WEDGE, thickness_px=16, algorithm="sirt", iterations=5, signal_check=False,
                      min_tilts=2, method="per_slice")
    assert _rel_rms(v1, ref.volume) <= 1e-5 and v2.shape == v1.shape


def test_memory_estimates_bound_the_real_matrix() -> None:
    """The up-front nnz estimate (no matrix built) is an upper bound within 25 % of ASTRA's count."""
    for n_z, n_x, proj in [(64, 64, "line"), (32, 96, "line"), (48, 48, "linear"), (48, 48, "strip")]:
        real = system_matrix_nnz(n_z, n_x, WEDGE, projector=proj)
        est = matrix_nnz_estimate(n_z, n_x, WEDGE, n_x, proj)
        assert real <= est <= 1.25 * real, (n_z, n_x, proj, real, est)
    assert matrix_memory_mb(10**6, 0, 0) == pytest.approx(16.0, abs=1e-3)
    # The slab rule's mem_mb grows with the matrix and drops it for per-slice / FBP.
    shape = (69, 702, 1024)
    auto = slab_job_mem_mb(shape, 512, {"slabs": 11, "projector": "line", "method": "auto", "algorithm": "mlem"})
    per = slab_job_mem_mb(shape, 512, {"slabs": 11, "projector": "line", "method": "per_slice", "algorithm": "mlem"})
    fbp = slab_job_mem_mb(shape, 512, {"slabs": 11, "projector": "line", "method": "auto", "algorithm": "fbp"})
    nnz = matrix_nnz_estimate(512, 1024, WEDGE, 1024)
    assert auto - per == pytest.approx(batched_memory_mb(69, 64, 1024, 512, nnz), abs=1)
    assert per == fbp and auto > per + 1000
    assert slab_job_mem_mb(None, None, {}) == 1000


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # mrcfile, 0-slice slab
def test_gather_slabs_is_a_bit_identical_concatenation(tmp_path) -> None:
    from tomoflow import io
    from tomoflow.errors import InputError

    rng = np.random.default_rng(0)
    vol = rng.random((7, 5, 6)).astype(np.float32)
    parts = []
    for i, (a, b) in enumerate([(0, 3), (3, 3), (3, 7)]):               # includes an empty slab
        parts.append(str(tmp_path / f"s{i}.mrc"))
        io.write_volume(parts[-1], vol[a:b], 0.5)
    got, voxel = gather_slabs(parts, io.read_volume, io.volume_shape, dtype=np.float32, n_slices=7)
    np.testing.assert_array_equal(got, vol)
    assert voxel == pytest.approx(0.5)
    with pytest.raises(InputError, match="hold 7 slices but the volume has 8"):
        gather_slabs(parts, io.read_volume, io.volume_shape, dtype=np.float32, n_slices=8)
    io.write_volume(tmp_path / "odd.mrc", vol[:2, :4], 0.5)
    with pytest.raises(InputError, match="different slice shapes"):
        gather_slabs(parts + [str(tmp_path / "odd.mrc")], io.read_volume, io.volume_shape, dtype=np.float32)


# --------------------------------------------------------------------------- peers and GPU
@pytest.mark.tomopy
def test_batched_mlem_equals_tomopy_mlem() -> None:
    pytest.importorskip("tomopy")
    vol = _random_phantom(2, 40, 56, seed=6)
    ts = forward_project(vol, WEDGE, center_offset_px=1.0)
    a = reconstruct(ts, WEDGE, thickness_px=40, iterations=20, center_offset_px=1.0, method="batched")
    t = reconstruct(ts, WEDGE, thickness_px=40, iterations=20, center_offset_px=1.0, backend="tomopy")
    assert np.sqrt(np.mean((t.volume - a.volume) ** 2)) < 1e-3 * a.volume.max()
    np.testing.assert_allclose(t.misfit, a.misfit, rtol=1e-2)


def _cupy_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.parametrize("algorithm", ["mlem", "osem", "sirt"])
def test_batched_gpu_equals_cpu(algorithm: str) -> None:
    if not _cupy_gpu():
        pytest.skip("no CuPy CUDA device")
    vol = _random_phantom(6, 32, 45, seed=7)
    ts = forward_project(vol, WEDGE, center_offset_px=2.0)
    kw = dict(thickness_px=32, algorithm=algorithm, subsets=4, iterations=10, center_offset_px=2.0,
              signal_check=False, method="batched")
    cpu = reconstruct(ts, WEDGE, device="cpu", threads=2, **kw)
    gpu = reconstruct(ts, WEDGE, device="gpu", **kw)
    assert gpu.info["device"] == "gpu" and cpu.info["device"] == "cpu"
    assert _rel_rms(gpu.volume, cpu.volume) <= 1e-4
    np.testing.assert_allclose(gpu.misfit, cpu.misfit, rtol=1e-4)
