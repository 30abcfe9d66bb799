"""tomoflow.geometry: the one model of tomoflow.synthetic (forward) and tomoflow.align (inverse).

Round trip: misalign with the generator's truth, undo with the aligner's model -> identity (exactly for the
affine maps, within interpolation error for images); gauge and frame translations behave as documented.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tomoflow import align, geometry, synthetic


@pytest.mark.parametrize("phi,s,shape", [(4.0, (3.3, -2.1), (80, 120)), (-91.5, (-6.0, 4.5), (90, 90)), (0.0, (0.0, 0.0), (40, 70))])
def test_misalign_then_align_maps_are_inverse(phi, s, shape):
    # aligned(q) = raw(M_a q + o_a); raw(p) = ideal(M_m p + o_m)  =>  aligned(q) = ideal(M_m (M_a q + o_a) + o_m)
    Ma, oa = geometry.warp_params(phi, s, 0.0, shape, shape)
    Mm, om = geometry.misalign_params(phi, s, shape)
    np.testing.assert_allclose(Mm @ Ma, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(Mm @ oa + om, 0.0, atol=1e-9)


def test_round_trip_generator_truth_through_the_aligner_is_identity():
    rng = np.random.default_rng(0)
    ideal = ndimage.gaussian_filter(rng.random((80, 120)), 2.0).astype(np.float32)
    s, phi = (3.3, -2.1), 4.0
    raw = synthetic.misalign_image(ideal, s, phi)
    al = align.Alignment(angles_deg=np.zeros(1), shifts_px=np.array([s]), tilt_axis_deg=phi, center_offset_px=0.0,
                         reference_index=0, input_shape=(80, 120), output_shape=(80, 120))
    back = align.apply_alignment(raw[None], al)[0]
    inner = (slice(15, -15), slice(15, -15))
    assert np.abs(back[inner] - ideal[inner]).max() / np.ptp(ideal) < 0.02


def test_misalign_image_moves_a_point_as_the_model_says():
    img = np.zeros((41, 61))
    img[25, 40] = 1.0  # (row y, col x)
    img = ndimage.gaussian_filter(img, 1.5)
    phi, s = 10.0, (3.0, -2.0)
    out = synthetic.misalign_image(img, s, phi, order=3)
    o = np.array([(61 - 1) / 2, (41 - 1) / 2])  # (x, y)
    c, sn = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    expect = np.array([[c, -sn], [sn, c]]) @ (np.array([40.0, 25.0]) - o) + o + np.array(s)
    cy, cx = ndimage.center_of_mass(np.clip(out, 0, None))
    assert (cx, cy) == pytest.approx(tuple(expect), abs=0.05)


def test_fix_gauge_removes_a_specimen_translation_exactly():
    angles = np.arange(-60.0, 61.0, 3.0)
    ref = int(np.argmin(np.abs(angles)))
    rng = np.random.default_rng(1)
    t = rng.normal(0, 2, (angles.size, 2))
    t[ref] = 0
    t0, c0 = geometry.fix_gauge(t, 0.7, angles, ref)
    # the same data explained with the specimen moved by (dX, dZ) = (3, -2)
    t2 = t0.copy()
    t2[:, 0] += geometry.frame_translation(angles, 3.0, -2.0) - 3.0
    t3, c3 = geometry.fix_gauge(t2, c0 + 3, angles, ref)
    assert np.allclose(t3, t0, atol=1e-9) and math.isclose(c3, c0, abs_tol=1e-9)
    assert np.allclose(t0[ref], 0)


def test_remove_translation_gauge_is_fix_gauge_in_the_raw_frame():
    angles = np.arange(-50.0, 51.0, 5.0)
    ref = int(np.argmin(np.abs(angles)))
    s = np.random.default_rng(2).normal(0, 3, (angles.size, 2))
    s[ref] = 0
    phi = 7.0
    out = geometry.remove_translation_gauge(s, angles, phi, ref)
    t_fixed, _ = geometry.fix_gauge(geometry.rot(-phi, s), 0.0, angles, ref)
    np.testing.assert_allclose(geometry.rot(-phi, out), t_fixed, atol=1e-9)


def test_generator_frame_shifts_put_the_reference_image_on_the_volume():
    angles = np.arange(-60.0, 61.0, 2.0)
    ref = int(np.argmin(np.abs(angles)))
    s = np.zeros((angles.size, 2))
    out = synthetic.frame_shifts(s, angles, 2.5, 1.5, ref)
    t = geometry.rot(-2.5, out)
    assert 1.5 + t[ref, 0] == pytest.approx(0.0, abs=1e-12)  # T_ref = c + t_x,ref = 0
    t_min, c = geometry.fix_gauge(t, 1.5, angles, ref)  # a pure specimen translation: the gauge removes it
    np.testing.assert_allclose(t_min, 0.0, atol=1e-9)
    assert c == pytest.approx(1.5, abs=1e-9)
