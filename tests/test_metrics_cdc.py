"""CDC against an independent SciPy transcription of the TCVC definition, and its invariants."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from lc4.metrics import cdc, cdc_curve, cdc_per_channel, channel_histograms


def _ref_hist(frame: np.ndarray, c: int) -> np.ndarray:
    h, w, _ = frame.shape
    counts, _ = np.histogram(frame[..., c], bins=256, range=(0, 256))
    return counts / (h * w)


def _ref_js(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    return 0.5 * entropy(p, m) + 0.5 * entropy(q, m)


def _ref_cdc_channels(video: np.ndarray, intervals=(1, 2, 4)) -> np.ndarray:
    """Loop transcription: per channel, mean JS per interval, equal weights over usable intervals."""
    t = video.shape[0]
    usable = [d for d in intervals if d < t]
    if not usable:
        return np.zeros(3)
    out = np.zeros(3)
    for c in range(3):
        hists = [_ref_hist(f, c) for f in video]
        per_interval = []
        for d in usable:
            per_interval.append(np.mean([_ref_js(hists[i], hists[i + d]) for i in range(t - d)]))
        out[c] = np.mean(per_interval)
    return out


def _structured(t: int, h: int = 24, w: int = 28) -> np.ndarray:
    """Flat background with a moving coloured square and a gradient stripe: sparse histograms."""
    v = np.zeros((t, h, w, 3), np.uint8)
    v[..., 0] = 30
    v[..., 1] = 200
    v[:, :, : w // 4, 2] = np.linspace(0, 255, h, dtype=np.uint8)[None, :, None]
    for i in range(t):
        y, x = (2 * i) % (h - 6), (3 * i) % (w - 6)
        v[i, y : y + 6, x : x + 6] = (250, 10 + 20 * i % 200, 90)
    return v


@pytest.mark.parametrize("t", [5, 6, 9])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_matches_scipy_transcription(t, kind):
    rng = np.random.default_rng(t)
    video = rng.integers(0, 256, (t, 20, 22, 3), dtype=np.uint8) if kind == "random" else _structured(t)
    ref = _ref_cdc_channels(video)
    np.testing.assert_allclose(cdc_per_channel(video), ref, rtol=0, atol=1e-9)
    assert abs(cdc(video) - ref.mean()) < 1e-9


@pytest.mark.parametrize("t", [2, 3, 4])
def test_short_clips_use_available_intervals(t):
    video = np.random.default_rng(10 + t).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)
    value = cdc(video)
    assert np.isfinite(value)
    assert abs(value - _ref_cdc_channels(video).mean()) < 1e-9


def test_single_frame_is_zero():
    assert cdc(np.full((1, 8, 8, 3), 77, np.uint8)) == 0.0


def test_js_agrees_with_jensenshannon_distance():
    video = _structured(2)
    hist = channel_histograms(video)
    for c in range(3):
        # scipy's jensenshannon is the square root of the divergence, natural log by default
        expected = jensenshannon(hist[0, c], hist[1, c]) ** 2
        assert abs(_ref_js(hist[0, c], hist[1, c]) - expected) < 1e-12
    np.testing.assert_allclose(
        cdc_curve(video, 1)[0], np.mean([jensenshannon(hist[0, c], hist[1, c]) ** 2 for c in range(3)]), atol=1e-12
    )


def test_histograms_sum_to_one_and_match_numpy():
    video = np.random.default_rng(0).integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)
    hist = channel_histograms(video)
    assert hist.shape == (3, 3, 256)
    np.testing.assert_allclose(hist.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(hist[2, 1], _ref_hist(video[2], 1), atol=0)


def test_static_video_is_zero():
    frame = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    assert cdc(np.repeat(frame, 7, axis=0)) == 0.0


def test_grows_monotonically_with_colour_jitter():
    rng = np.random.default_rng(2)
    base = rng.integers(60, 190, (1, 32, 32, 3)).astype(np.int64)
    offsets = rng.uniform(-1, 1, (12, 1, 1, 3))
    values = []
    for amplitude in (0, 2, 5, 10, 20, 40):
        video = np.clip(base + np.rint(amplitude * offsets), 0, 255).astype(np.uint8)
        values.append(cdc(video))
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_scale_and_input_types_agree():
    video = np.random.default_rng(3).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    raw = cdc(video)
    assert cdc(video, scale=1000) == pytest.approx(1000 * raw, rel=1e-12)
    assert cdc(torch.from_numpy(video)) == pytest.approx(raw, abs=1e-15)
    assert cdc(video.astype(np.float32) / 255.0) == pytest.approx(raw, abs=1e-15)


def test_custom_intervals_and_weights():
    video = np.random.default_rng(4).integers(0, 256, (9, 10, 10, 3), dtype=np.uint8)
    only1 = cdc(video, intervals=(1,))
    assert only1 == pytest.approx(cdc_curve(video, 1).mean(), abs=1e-12)
    assert cdc(video, intervals=(1, 2), weights=(1, 0)) == pytest.approx(only1, abs=1e-12)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 8, 4), np.uint8), np.full((2, 4, 4, 3), 2.0), np.full((2, 4, 4, 3), -3)],
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        cdc(bad)


def test_bad_intervals_raise():
    video = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="intervals"):
        cdc(video, intervals=(0, 1))
    with pytest.raises(ValueError, match="weights"):
        cdc(video, intervals=(1, 2), weights=(1,))
