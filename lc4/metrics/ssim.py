"""SSIM with the settings of scikit-image's Gaussian variant, batched over frames.

Equivalent to ``skimage.metrics.structural_similarity(gt, pred, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)`` per frame: an
11×11 Gaussian window (σ = 1.5, truncated at 3.5σ), K1 = 0.01, K2 = 0.03, population
covariances, the SSIM map averaged over the pixels whose window lies inside the frame and over
the three RGB channels. Only those "valid" pixels are kept, so filtering and cropping to them computes
exactly what scikit-image computes after its border crop (the boundary mode of the
filter never reaches the kept pixels). Float64 throughout, SciPy separable filters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import correlate1d

from ._video import as_float_video, check_same_shape

__all__ = ["ssim_per_frame", "ssim", "gaussian_window"]

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def gaussian_window(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """1-D normalised Gaussian taps with SciPy's radius rule ``int(truncate·σ + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter over axes 1, 2 of ``(N, H, W, C)``, keeping only the valid window positions."""
    r = k.size // 2
    y = correlate1d(correlate1d(x, k, axis=1, mode="nearest"), k, axis=2, mode="nearest")
    return y[:, r : y.shape[1] - r, r : y.shape[2] - r]


def ssim_per_frame(pred: Any, gt: Any, chunk: int = 16) -> np.ndarray:
    """Per-frame SSIM of two ``(T, H, W, 3)`` RGB videos (or single frames), shape ``(T,)``.

    Frames must be at least 11×11 pixels (the window size), as in scikit-image.
    """
    p = as_float_video(pred, "pred", allow_frame=True)
    g = as_float_video(gt, "gt", allow_frame=True)
    check_same_shape(p, g)
    k = gaussian_window()
    win = k.size
    if p.shape[1] < win or p.shape[2] < win:
        raise ValueError(f"SSIM needs frames of at least {win}x{win} pixels; got {p.shape[1]}x{p.shape[2]}")
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    out = []
    step = max(1, int(chunk))
    for s in range(0, p.shape[0], step):
        x, y = p[s : s + step], g[s : s + step]
        mx, my = _blur_valid(x, k), _blur_valid(y, k)
        vx = _blur_valid(x * x, k) - mx * mx
        vy = _blur_valid(y * y, k) - my * my
        vxy = _blur_valid(x * y, k) - mx * my
        smap = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        out.append(smap.mean(axis=(1, 2, 3)))
    return np.concatenate(out)


def ssim(pred: Any, gt: Any) -> float:
    """Mean over frames of :func:`ssim_per_frame`."""
    return float(ssim_per_frame(pred, gt).mean())
