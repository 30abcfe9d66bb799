"""tomoflow.align on a tilt series made by this test's own forward model (issue 16 acceptance):
tilt axis ±3°, centre offset ±5 px, two doses: axis within 0.2°, volume within 1 voxel of where the
documented frame puts the specimen.

The forward model below uses neither tomoflow.synthetic nor tomoflow.geometry nor ASTRA: the specimen is a
set of 3-D Gaussian blobs, whose parallel projections are 2-D Gaussians known in closed form.  Conventions,
written out here:

* specimen point (X, Y, Z) in px relative to the rotation axis (Y along the axis); at tilt θ it projects to
  ``u = X cos θ + Z sin θ`` across the axis and ``v = Y`` along it (ASTRA's parallel geometry, in which the
  volume index ``z`` grows against Z: ``z = (n_z − 1)/2 − Z``);
* the raw image shows axis-frame point ``(u + c + d⊥_i, v + d∥_i)`` at pixel ``o + R(φ) (u + c + d⊥_i, v + d∥_i)``,
  ``o`` the image centre, ``R(φ)`` the counter-clockwise rotation of (x, y) = (column, row) by the tilt-axis
  angle φ (the meaning of a sample's ``tilt_axis_deg``), ``c`` the rotation-centre offset and ``d_i`` an
  i.i.d. drift (also at the 0° tilt, so it has components a specimen translation could explain);
* the documented frame (tomoflow.align docstring): x and y as the 0° image shows them, z centre of mass
  at the volume centre.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from tomoflow import align
from tomoflow.recon import reconstruct

NY, NZ, NX = 64, 40, 96
ANGLES = np.arange(-66.0, 66.1, 3.0)


def _blobs(rng: np.random.Generator, n: int = 45) -> np.ndarray:
    """Rows (X, Y, Z, sigma, amplitude): compact specimen (in view at every tilt), off the y edges."""
    out = []
    while len(out) < n:
        X, Z = rng.uniform(-30, 30), rng.uniform(-13, 13)
        if X * X + Z * Z < 30.0**2:
            out.append((X, rng.uniform(-NY / 2 + 12, NY / 2 - 12), Z, rng.uniform(1.4, 2.4), rng.uniform(0.5, 1.5)))
    return np.array(out)


def _series(blobs: np.ndarray, phi: float, c: float, dose: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw noisy tilt series (n_tilts, NY, NX) and the drift d (n_tilts, 2) = (d⊥, d∥), px."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0.0, 2.5, size=(ANGLES.size, 2))
    yy, xx = np.mgrid[0:NY, 0:NX].astype(np.float64)
    o = np.array([(NX - 1) / 2.0, (NY - 1) / 2.0])
    cp, sp = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    X, Y, Z, s, A = blobs.T
    raw = np.empty((ANGLES.size, NY, NX))
    for i, th in enumerate(np.radians(ANGLES)):
        u = X * math.cos(th) + Z * math.sin(th) + c + drift[i, 0]
        v = Y + drift[i, 1]
        px, py = o[0] + cp * u - sp * v, o[1] + sp * u + cp * v
        img = np.zeros((NY, NX))
        for k in range(blobs.shape[0]):
            img += A[k] * s[k] * math.sqrt(2 * math.pi) * np.exp(-((xx - px[k]) ** 2 + (yy - py[k]) ** 2) / (2 * s[k] ** 2))
        raw[i] = img
    counts = rng.poisson(np.clip(raw, 0, None) * dose) + rng.normal(0.0, 2.0, raw.shape)
    return counts.astype(np.float32), drift


def _truth_in_frame(blobs: np.ndarray, c: float, drift_ref: np.ndarray) -> np.ndarray:
    """The blobs rendered on the (NY, NZ, NX) voxel grid where the documented frame puts them."""
    X, Y, Z, s, A = blobs.T
    mass = A * s**3
    zc = Z - np.sum(mass * Z) / np.sum(mass)  # centre of mass on the rotation axis
    xi = (NX - 1) / 2.0 + X + c + drift_ref[0]  # as the 0° image shows it
    yi = (NY - 1) / 2.0 + Y + drift_ref[1]
    zi = (NZ - 1) / 2.0 - zc
    y, z, x = np.mgrid[0:NY, 0:NZ, 0:NX].astype(np.float64)
    vol = np.zeros((NY, NZ, NX))
    for k in range(blobs.shape[0]):
        r2 = (x - xi[k]) ** 2 + (y - yi[k]) ** 2 + (z - zi[k]) ** 2
        vol += A[k] * np.exp(-r2 / (2 * s[k] ** 2))
    return vol


@pytest.mark.parametrize("phi,c", [(3.0, -5.0), (-3.0, 5.0)])
@pytest.mark.parametrize("dose", [200.0, 20.0])
def test_axis_and_frame_on_an_independent_series(phi, c, dose):
    rng = np.random.default_rng(101)
    blobs = _blobs(rng)
    raw, drift = _series(blobs, phi, c, dose, seed=int(abs(phi) * 10 + dose))
    ref = int(np.argmin(np.abs(ANGLES)))
    res = align.align_tilt_series(raw, ANGLES, tilt_axis_prior_deg=0.0, thickness_px=NZ, threads=2,
                                  params=align.AlignParams(projection_matching_rounds=1))
    a = res.alignment
    info = a.residuals["tilt_axis"]
    assert abs(a.tilt_axis_deg - phi) < 0.2, (a.tilt_axis_deg, info)
    assert not info["hit_bound"] and info["status"].startswith("estimated") and info["uncertainty_deg"] < 0.5
    assert "centre of mass" in a.frame["z"]
    vol = reconstruct(res.aligned, ANGLES, thickness_px=NZ, algorithm="sirt", iterations=30, threads=2).volume
    truth = _truth_in_frame(blobs, c, drift[ref])
    shift, _, _ = phase_cross_correlation(truth, np.asarray(vol, np.float64), upsample_factor=10, normalization=None)
    print(f"phi {phi:+.1f} c {c:+.1f} dose {dose:g}: axis {a.tilt_axis_deg:+.3f} ± {info['uncertainty_deg']:.3f}°, "
          f"volume offset (y, z, x) {shift} voxels")
    assert np.all(np.abs(shift) < 1.0), f"volume is {shift} voxels (y, z, x) from the specimen's place in the frame"
    assert float(np.corrcoef(truth.ravel(), np.asarray(vol).ravel())[0, 1]) > 0.8


def test_a_wrong_tilt_axis_fails_the_row_band_gate():
    # the same series aligned with the axis forced to the prior 0° while it is 3°: the rotation axis then sits at
    # x positions ~3 px apart in the row bands (crescents away from the central slices) and the gate says so
    rng = np.random.default_rng(101)
    raw, _ = _series(_blobs(rng), 3.0, -5.0, 200.0, seed=230)
    p = align.AlignParams(projection_matching_rounds=1, estimate_tilt_axis=False)
    with pytest.raises(align.AlignmentQualityError, match="different x in different row bands"):
        align.align_tilt_series(raw, ANGLES, tilt_axis_prior_deg=0.0, thickness_px=NZ, threads=2, params=p)
