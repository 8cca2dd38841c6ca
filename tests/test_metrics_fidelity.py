"""PSNR and SSIM against scikit-image on random and structured videos."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lc4.metrics import psnr, psnr_per_frame, ssim, ssim_per_frame


def _pairs():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (3, 23, 31, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    yield "random", gt, rng.integers(0, 256, gt.shape, dtype=np.uint8)
    yield "noisy", gt, noisy
    ramp = np.broadcast_to(np.linspace(0, 255, 40)[None, None, :, None], (2, 30, 40, 3)).astype(np.uint8).copy()
    shifted = ramp.copy()
    shifted[:, 10:20, 5:25] = (255, 0, 0)
    shifted[1] = np.roll(shifted[1], 3, axis=1)
    yield "structured", ramp, shifted


def _sk_ssim(a, b):
    return structural_similarity(
        b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )


@pytest.mark.parametrize("case", list(_pairs()), ids=lambda c: c[0])
def test_ssim_matches_skimage(case):
    _, gt, pred = case
    ref = [_sk_ssim(p, g) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(ssim_per_frame(pred, gt), ref, rtol=0, atol=1e-6)
    assert ssim(pred, gt) == pytest.approx(np.mean(ref), abs=1e-6)


@pytest.mark.parametrize("case", list(_pairs()), ids=lambda c: c[0])
def test_psnr_matches_skimage(case):
    _, gt, pred = case
    ref = [peak_signal_noise_ratio(g, p, data_range=255) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(psnr_per_frame(pred, gt), ref, rtol=0, atol=1e-6)
    assert psnr(pred, gt) == pytest.approx(np.mean(ref), abs=1e-6)


def test_identical_inputs():
    video = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert psnr(video, video) == float("inf")
    assert psnr(video, video, cap=100.0) == 100.0
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-12)


def test_cap_only_bounds_infinite_frames():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    pred = gt.copy()
    pred[1] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    per = psnr_per_frame(pred, gt, cap=60.0)
    assert per[0] == 60.0 and per[1] == pytest.approx(psnr_per_frame(pred[1:], gt[1:])[0])


def test_float_and_tensor_inputs():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    pred = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    assert psnr(torch.from_numpy(pred), gt / 255.0) == pytest.approx(psnr(pred, gt), abs=1e-9)
    assert ssim(pred / 255.0, torch.from_numpy(gt)) == pytest.approx(ssim(pred, gt), abs=1e-9)


def test_errors():
    a = np.zeros((2, 12, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, a[:1])
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:, :8, :8], a[:, :8, :8])
