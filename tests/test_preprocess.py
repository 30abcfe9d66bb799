"""tomoflow.preprocess: hot-pixel / X-ray spike removal (IMOD ccderaser-like)."""

import numpy as np
import pytest

from tomoflow.errors import InputError
from tomoflow.preprocess import find_hot_pixels, remove_hot_pixels


def test_hand_built_spike_replaced_by_the_local_median():
    # a 7x7 checkerboard of 100/101 counts with one hot pixel in the middle
    img = 100.0 + (np.add.outer(np.arange(7), np.arange(7)) % 2)
    img[3, 3] = 5000.0
    clean, hot = remove_hot_pixels(img[None])
    # the 24 other pixels of the 5x5 window: 12 x 100 and 12 x 101 -> median 100.5
    expected = img.copy()
    expected[3, 3] = 100.5
    np.testing.assert_array_equal(clean[0], expected)
    assert hot.total == 1 and hot.counts.tolist() == [1]
    assert hot.positions.tolist() == [[0, 3, 3]] and hot.values.tolist() == [5000.0]
    assert hot.mask().sum() == 1 and hot.mask()[0, 3, 3]
    assert hot.summary()["per_tilt"] == [1] and hot.summary()["tilts_affected"] == [0]


def _particle_stack(seed: int, n_tilts: int = 3, size: int = 96):
    """Independent synthetic HAADF images: smooth support + compact bright Pt blobs, Poisson noise.

    Particles: discs 3-10 px wide blurred by a Gaussian probe (sigma 0.6 px) and ~3 px wide Gaussian
    blobs - compact, very bright (up to 30x the background).  Returns noisy counts and a mask of the particle pixels.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    stack, masks = [], []
    for _ in range(n_tilts):
        support = gaussian_filter(rng.random((size, size)), 6)
        clean = 800.0 + 4000.0 * (support > np.median(support))
        clean = gaussian_filter(clean, 1.0)
        mask = np.zeros((size, size), bool)
        discs = np.zeros((size, size))
        for k, width in enumerate([3, 3, 4, 5, 6, 8, 10, 3, 4, 3]):
            cy, cx = 8 + (k // 5) * 40 + rng.uniform(0, 30), 8 + (k % 5) * 17 + rng.uniform(0, 4)
            cy, cx = round(cy) + (0.5 if width % 2 == 0 else 0.0), round(cx) + (0.5 if width % 2 == 0 else 0.0)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (width / 2) ** 2
            discs += disc * rng.uniform(8000.0, 25000.0)
            mask |= disc
        clean = clean + gaussian_filter(discs, 0.6)
        # the most compact particles: ~3 px wide Gaussian blobs (sigma 0.75 px), whose top pixel stands
        # out of its 3x3 median by far more than 10 noise SDs
        points = np.zeros((size, size))
        for _ in range(8):
            y, x = rng.integers(4, size - 4, 2)
            points[y, x] += rng.uniform(2e4, 2e5)
            mask[y - 1 : y + 2, x - 1 : x + 2] = True
        clean = clean + gaussian_filter(points, 0.75)
        stack.append(rng.poisson(clean).astype(np.float32))
        masks.append(mask)
    return np.stack(stack), np.stack(masks)


def test_synthetic_spikes_removed_particles_untouched():
    stack, particles = _particle_stack(3)
    spiked = stack.copy()
    spikes = [(0, 20, 50, 60000.0), (0, 70, 70, 1e30), (1, 5, 5, 9000.0), (2, 90, 40, 3e4),
              (2, 91, 41, 2.5e4)]  # the last two: one two-pixel X-ray hit
    for t, y, x, v in spikes:
        spiked[t, y, x] = v
    # where they land, the image is far from any particle
    for t, y, x, _ in spikes:
        assert not particles[t, max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4].any()
    clean, hot = remove_hot_pixels(spiked)
    found = {tuple(p) for p in hot.positions.tolist()}
    assert {(t, y, x) for t, y, x, _ in spikes} <= found
    # repaired to within the local noise of the true value
    for t, y, x, _ in spikes:
        truth = stack[t, y, x]
        assert abs(clean[t, y, x] - truth) < 6 * np.sqrt(truth) + 5
    # no pixel of any particle changed; nothing else either, except at most a stray noise pixel
    assert not (hot.mask() & particles).any()
    assert len(found) - len(spikes) <= 2
    untouched = ~hot.mask()
    np.testing.assert_array_equal(clean[untouched], spiked[untouched])
    # the clean stack alone: particles are not spikes, however bright
    for t in range(stack.shape[0]):
        assert not (find_hot_pixels(stack[t]) & particles[t]).any()


def test_non_finite_pixels_replaced_and_unrepairable_tilts_named():
    stack, _ = _particle_stack(5, n_tilts=4, size=64)
    bad = stack.copy()
    bad[1, 10, 10] = np.inf
    bad[1, 30, 12] = np.nan
    clean, hot = remove_hot_pixels(bad)
    assert np.all(np.isfinite(clean)) and hot.counts[1] >= 2 and hot.summary()["non_finite_pixels"] == 2
    assert abs(clean[1, 10, 10] - stack[1, 10, 10]) < 6 * np.sqrt(stack[1, 10, 10]) + 5

    inf_tilt = stack.copy()
    inf_tilt[2] = np.inf  # a whole image of Inf
    with pytest.raises(InputError, match=r"stack\.mrc: tilt index 2 has 4096 NaN/Inf pixels"):
        remove_hot_pixels(inf_tilt, where="stack.mrc")

    noisy = stack.copy()
    rng = np.random.default_rng(0)
    idx = rng.choice(64 * 64, 200, replace=False)  # ~5 % of the pixels of tilt 3 are spikes
    noisy[3].ravel()[idx] = 1e6
    with pytest.raises(InputError, match=r"tilt index 3 has \d+ hot/spike pixels") as err:
        remove_hot_pixels(noisy, where="stack.mrc")
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)
    with pytest.raises(InputError, match="tilt series"):
        remove_hot_pixels(stack[0])


def test_real_needle_spikes_removed(needle_dir):
    from tomoflow.io import read_tilt_series

    ts = read_tilt_series(needle_dir / "HAADF.mrc", needle_dir / "HAADF.rawtlt", 3.36)
    data = ts.data[30:46]  # 16 tilts around 0 degrees
    _, hot0 = remove_hot_pixels(data)
    assert hot0.total <= 5  # a raw series of good quality: (almost) nothing to repair
    spiked = data.copy()
    # one 1e30 value (the case), a spike on the needle, a two-pixel X-ray hit in vacuum
    inject = [(3, 128, 128, 1e30), (7, 100, 60, None), (12, 40, 200, 20000.0), (12, 40, 201, 15000.0)]
    for t, y, x, v in inject:
        spiked[t, y, x] = v if v is not None else data[t, y, x] + 10000.0
    clean, hot = remove_hot_pixels(spiked)
    found = {tuple(p) for p in hot.positions.tolist()}
    assert {(t, y, x) for t, y, x, _ in inject} <= found
    assert hot.total <= hot0.total + len(inject)
    for t, y, x, _ in inject:
        neigh = data[t, y - 2 : y + 3, x - 2 : x + 3]
        assert neigh.min() <= clean[t, y, x] <= neigh.max()
    untouched = ~hot.mask()
    np.testing.assert_array_equal(clean[untouched], spiked[untouched])
