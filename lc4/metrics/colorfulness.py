"""Colourfulness of Hasler & Süsstrunk (2003), the "Color." column of the L-C4 tables.

For an RGB frame in 0–255 units with opponent channels rg and yb:

    M = sqrt(σ_rg² + σ_yb²) + 0.3 · sqrt(μ_rg² + μ_yb²)      (population σ)

Two variants are in use and give different numbers, so the variant is a parameter:

* ``"signed"`` (default; the paper's definition): rg = R − G, yb = ½(R + G) − B.
* ``"abs"``: rg = |R − G|, yb = |½(R + G) − B|, the form most colourisation evaluation code
  copies (it comes from a widely read OpenCV tutorial).

A video's colourfulness is the mean of its per-frame values. Grey frames score 0 in both.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._video import as_float_video

__all__ = ["colorfulness", "colorfulness_per_frame", "COLORFULNESS_VARIANTS"]

COLORFULNESS_VARIANTS: tuple[str, ...] = ("signed", "abs")
Variant = Literal["signed", "abs"]


def _check_variant(variant: str) -> str:
    if variant not in COLORFULNESS_VARIANTS:
        raise ValueError(f"colorfulness variant must be one of {COLORFULNESS_VARIANTS}; got {variant!r}")
    return variant


def colorfulness_per_frame(video: Any, variant: Variant = "signed") -> np.ndarray:
    """Colourfulness of every frame of a ``(T, H, W, 3)`` video (or one ``(H, W, 3)`` frame): ``(T,)``."""
    _check_variant(variant)
    v = as_float_video(video, allow_frame=True)
    r, g, b = v[..., 0], v[..., 1], v[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    if variant == "abs":
        rg, yb = np.abs(rg), np.abs(yb)
    axes = (1, 2)
    sigma = np.sqrt(rg.var(axis=axes) + yb.var(axis=axes))
    mu = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return sigma + 0.3 * mu


def colorfulness(frame_or_video: Any, variant: Variant = "signed") -> float:
    """Colourfulness of one frame, or the mean over the frames of a video (0–255 units)."""
    return float(colorfulness_per_frame(frame_or_video, variant).mean())
