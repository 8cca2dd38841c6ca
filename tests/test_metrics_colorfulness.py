"""Colourfulness: hand-computed cases, both variants, grey frames, input handling."""

import math

import numpy as np
import pytest
import torch

from lc4.metrics import colorfulness, colorfulness_per_frame


def _two_pixel_frame() -> np.ndarray:
    # pixel A = (200, 100, 50), pixel B = (0, 100, 250)
    return np.array([[[200, 100, 50], [0, 100, 250]]], dtype=np.uint8)


def test_hand_computed_signed():
    # rg = (100, -100): mean 0, std 100; yb = (100, -200): mean -50, std 150
    expected = math.sqrt(100**2 + 150**2) + 0.3 * math.sqrt(0**2 + 50**2)
    assert colorfulness(_two_pixel_frame(), "signed") == pytest.approx(expected, abs=1e-9)


def test_hand_computed_abs():
    # |rg| = (100, 100): mean 100, std 0; |yb| = (100, 200): mean 150, std 50
    expected = math.sqrt(0 + 50**2) + 0.3 * math.sqrt(100**2 + 150**2)
    assert colorfulness(_two_pixel_frame(), "abs") == pytest.approx(expected, abs=1e-9)


def _loop_reference(frame: np.ndarray, absolute: bool) -> float:
    r, g, b = (frame[..., i].astype(np.float64).ravel() for i in range(3))
    rg = [x - y for x, y in zip(r, g)]
    yb = [0.5 * (x + y) - z for x, y, z in zip(r, g, b)]
    if absolute:
        rg, yb = [abs(v) for v in rg], [abs(v) for v in yb]

    def stats(vals):
        m = sum(vals) / len(vals)
        return m, math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))

    (m1, s1), (m2, s2) = stats(rg), stats(yb)
    return math.sqrt(s1**2 + s2**2) + 0.3 * math.sqrt(m1**2 + m2**2)


@pytest.mark.parametrize("variant", ["signed", "abs"])
def test_matches_loop_reference_on_random_and_structured(variant):
    rng = np.random.default_rng(0)
    random = rng.integers(0, 256, (3, 9, 11, 3), dtype=np.uint8)
    structured = np.zeros((2, 8, 8, 3), np.uint8)
    structured[0, :4] = (255, 0, 0)
    structured[1, :, :3] = (10, 240, 60)
    for video in (random, structured):
        per_frame = colorfulness_per_frame(video, variant)
        ref = [_loop_reference(f, variant == "abs") for f in video]
        np.testing.assert_allclose(per_frame, ref, atol=1e-9)
        assert colorfulness(video, variant) == pytest.approx(np.mean(ref), abs=1e-9)


@pytest.mark.parametrize("variant", ["signed", "abs"])
def test_grey_frames_score_zero(variant):
    grey = np.repeat(np.random.default_rng(1).integers(0, 256, (4, 10, 10, 1), dtype=np.uint8), 3, axis=-1)
    assert colorfulness(grey, variant) == 0.0


def test_variants_differ_and_inputs_agree():
    video = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert colorfulness(video, "signed") != pytest.approx(colorfulness(video, "abs"))
    ref = colorfulness(video)
    assert colorfulness(torch.from_numpy(video)) == pytest.approx(ref, abs=1e-12)
    assert colorfulness(video.astype(np.float64) / 255.0) == pytest.approx(ref, abs=1e-9)


def test_bad_variant_and_input():
    with pytest.raises(ValueError, match="variant"):
        colorfulness(np.zeros((4, 4, 3), np.uint8), "hsv")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorfulness(np.full((4, 4, 3), 128.0))
