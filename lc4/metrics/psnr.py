"""PSNR between a colourised video and its ground truth, in 8-bit units (peak 255).

Computed in float64 per frame over all pixels and the three RGB channels; a video's value is the
mean over its frames. Identical frames give +inf (no error); :func:`psnr` then returns inf and
:func:`psnr_per_frame` with ``cap`` set clips each frame before averaging, which gives a finite
"capped" number for dataset tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._video import as_float_video, check_same_shape

__all__ = ["psnr_per_frame", "psnr", "PSNR_PEAK"]

PSNR_PEAK = 255.0


def psnr_per_frame(pred: Any, gt: Any, cap: float | None = None) -> np.ndarray:
    """Per-frame PSNR in dB, shape ``(T,)``; +inf for identical frames unless ``cap`` clips it."""
    p = as_float_video(pred, "pred", allow_frame=True)
    g = as_float_video(gt, "gt", allow_frame=True)
    check_same_shape(p, g)
    mse = ((p - g) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(PSNR_PEAK**2 / mse)
    if cap is not None:
        out = np.minimum(out, float(cap))
    return out


def psnr(pred: Any, gt: Any, cap: float | None = None) -> float:
    """Mean over frames of :func:`psnr_per_frame` (inf when any frame is identical and no cap)."""
    return float(psnr_per_frame(pred, gt, cap).mean())
