"""Color Distribution Consistency (CDC), the temporal-consistency index of TCVC (Liu et al.).

Definition, following the reference evaluation script of TCVC:

* per frame and channel, a 256-bin histogram of the 8-bit values, divided by H·W;
* the Jensen–Shannon divergence (natural log) between the histograms of frames ``i`` and
  ``i + d``, averaged over all such pairs, for each interval ``d`` in (1, 2, 4);
* the three interval means weighted 1/3 each → one value per channel and video;
* dataset value: mean over videos per channel, then mean over channels (equal to the mean over
  videos of the per-video channel means, which is what :func:`cdc` returns per video).

The L-C4 paper reports CDC ×1000; pass ``scale=1000`` to get that number.

Short clips (a choice the reference leaves undefined; it yields NaN there): an interval ``d`` is
used only when the clip has at least one pair at that distance (``T > d``), and the weights of
the intervals that are used are renormalised to sum to 1. A single frame (T = 1) has no pair at
all and its CDC is defined as 0.0 (no measurable change of colour distribution).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from einops import rearrange
from scipy.special import rel_entr

from ._video import as_uint8_video

__all__ = ["channel_histograms", "js_divergence", "cdc_per_channel", "cdc", "cdc_curve", "DEFAULT_INTERVALS"]

DEFAULT_INTERVALS: tuple[int, ...] = (1, 2, 4)


def channel_histograms(video: Any) -> np.ndarray:
    """Per-frame, per-channel 256-bin histograms normalised by H·W: shape ``(T, 3, 256)`` float64."""
    v = as_uint8_video(video, allow_frame=True)
    t, h, w, _ = v.shape
    flat = rearrange(v, "t h w c -> (t c) (h w)").astype(np.int64)
    # Offset every (frame, channel) row into its own 256-bin block and count in one bincount.
    offsets = (np.arange(flat.shape[0], dtype=np.int64) * 256)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * 256)
    return rearrange(counts.astype(np.float64) / (h * w), "(t c k) -> t c k", t=t, c=3, k=256)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence in nats along the last axis (0·log 0 = 0); inputs sum to 1."""
    m = 0.5 * (p + q)
    return 0.5 * rel_entr(p, m).sum(-1) + 0.5 * rel_entr(q, m).sum(-1)


def _check_intervals(intervals: Sequence[int], weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    iv = np.asarray(list(intervals), dtype=np.int64)
    if iv.ndim != 1 or iv.size == 0 or np.any(iv < 1):
        raise ValueError(f"intervals must be a non-empty list of integers >= 1; got {list(intervals)}")
    if weights is None:
        wt = np.full(iv.size, 1.0 / iv.size)
    else:
        wt = np.asarray(list(weights), dtype=np.float64)
        if wt.shape != iv.shape or np.any(wt < 0) or wt.sum() <= 0:
            raise ValueError(
                f"weights must be {iv.size} non-negative numbers with a positive sum; got {list(weights)}"
            )
    return iv, wt


def cdc_per_channel(
    video: Any, intervals: Sequence[int] = DEFAULT_INTERVALS, weights: Sequence[float] | None = None
) -> np.ndarray:
    """CDC of one video for each RGB channel (raw, not scaled): shape ``(3,)``.

    See the module docstring for the short-clip rule (T <= max interval) and T = 1 (zeros).
    """
    hist = channel_histograms(video)
    iv, wt = _check_intervals(intervals, weights)
    t = hist.shape[0]
    usable = iv < t
    if not usable.any():
        return np.zeros(3)
    iv, wt = iv[usable], wt[usable]
    wt = wt / wt.sum()
    total = np.zeros(3)
    for d, w in zip(iv, wt):
        total += w * js_divergence(hist[:-d], hist[d:]).mean(axis=0)
    return total


def cdc(
    video: Any,
    scale: float = 1.0,
    intervals: Sequence[int] = DEFAULT_INTERVALS,
    weights: Sequence[float] | None = None,
) -> float:
    """CDC of one ``(T, H, W, 3)`` RGB video: mean over channels of :func:`cdc_per_channel`.

    ``scale=1000`` gives the number the L-C4 paper reports. Lower is more consistent.
    """
    return float(cdc_per_channel(video, intervals, weights).mean() * scale)


def cdc_curve(video: Any, interval: int = 1, scale: float = 1.0) -> np.ndarray:
    """Per-pair JS divergence between frames ``i`` and ``i + interval`` (mean over channels).

    Shape ``(T - interval,)`` (empty for shorter clips); the mean of this curve for each interval
    is what :func:`cdc` weights. Useful for plotting where in a clip the colours flicker.
    """
    if int(interval) < 1:
        raise ValueError(f"interval must be >= 1; got {interval}")
    hist = channel_histograms(video)
    d = int(interval)
    if d >= hist.shape[0]:
        return np.zeros(0)
    return js_divergence(hist[:-d], hist[d:]).mean(axis=1) * scale
