"""Warping error with a synthetic known translation and an oracle flow."""

import numpy as np
import pytest

from lc4.metrics import warp_error, warp_error_per_pair, warp_frame


def _translating_video(t=4, dx=2, dy=1, h=24, w=30):
    """Frame i is a window of a large random texture moved by (dx, dy)·i: content moves by +(dx, dy)."""
    tex = np.random.default_rng(0).integers(0, 256, (h + dy * t + 4, w + dx * t + 4, 3), dtype=np.uint8)
    frames = []
    for i in range(t):
        oy, ox = dy * (t - i), dx * (t - i)
        frames.append(tex[oy : oy + h, ox : ox + w])
    return np.stack(frames)


def test_oracle_flow_gives_zero_error():
    video = _translating_video(dx=2, dy=1)
    oracle = lambda a, b: np.broadcast_to(np.array([2.0, 1.0]), a.shape[:2] + (2,))  # noqa: E731
    errs = warp_error_per_pair(video, oracle)
    assert errs.shape == (3,)
    assert np.all(errs < 1e-20)


def test_wrong_flow_and_flicker_increase_error():
    video = _translating_video()
    oracle = lambda a, b: np.broadcast_to(np.array([2.0, 1.0]), a.shape[:2] + (2,))  # noqa: E731
    zero = lambda a, b: np.zeros(a.shape[:2] + (2,))  # noqa: E731
    assert warp_error(video, zero) > 1e-3
    flicker = video.astype(int)
    flicker[1::2] += 30
    flicker = np.clip(flicker, 0, 255).astype(np.uint8)
    assert warp_error(flicker, oracle) > warp_error(video, oracle) + 1e-3


def test_reference_formula_on_one_pair():
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    flow = lambda a, b: np.zeros(a.shape[:2] + (2,))  # noqa: E731
    a, b = video[0] / 255.0, video[1] / 255.0
    assert warp_error(video, flow) == pytest.approx(np.sum((a - b) ** 2) / a.size, rel=1e-12)
    mask = np.zeros((6, 7))
    mask[:3] = 1
    expected = np.sum(((a - b) ** 2)[:3]) / (3 * mask.sum())
    assert warp_error(video, flow, mask_fn=lambda x, y, f: mask) == pytest.approx(expected, rel=1e-12)


def test_warp_frame_bilinear_half_pixel():
    frame = np.zeros((3, 4, 1))
    frame[:, 2] = 1.0
    warped, inside = warp_frame(frame, np.broadcast_to(np.array([0.5, 0.0]), (3, 4, 2)))
    np.testing.assert_allclose(warped[0, :, 0], [0.0, 0.5, 0.5, 0.0])
    assert inside[:, :3].all() and not inside[:, 3].any()


def test_single_frame_and_bad_flow():
    video = np.zeros((1, 5, 5, 3), np.uint8)
    assert warp_error(video, lambda a, b: None) == 0.0
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        warp_error(np.zeros((2, 5, 5, 3), np.uint8), lambda a, b: np.zeros((5, 5)))
