"""Per-frame colourfulness and CDC over time, for one or more results of the same clip.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it works
headless and does not disturb a caller's matplotlib state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lc4.metrics.cdc import cdc_curve
from lc4.metrics.colorfulness import colorfulness_per_frame

__all__ = ["temporal_curves", "plot_temporal"]


def temporal_curves(video: Any, colorfulness_variant: str = "signed") -> dict[str, np.ndarray]:
    """``colorfulness``: per frame, ``(T,)``; ``cdc``: ×1000 JS divergence of frame t−1 → t at t = 1…T−1."""
    return {
        "colorfulness": colorfulness_per_frame(video, colorfulness_variant),
        "cdc": cdc_curve(video, interval=1, scale=1000.0),
    }


def plot_temporal(
    results: Mapping[str, Any],
    out_png: str | os.PathLike,
    colorfulness_variant: str = "signed",
    title: str | None = None,
) -> Path:
    """Plot colourfulness (top) and CDC ×1000 between consecutive frames (bottom) against frame index.

    ``results`` maps a label (method name, "ground truth", …) to a ``(T, H, W, 3)`` RGB video.
    Writes a PNG (through a temporary name) and returns its path.
    """
    if not results:
        raise ValueError("plot_temporal needs at least one video in results")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax_c, ax_d = fig.subplots(2, 1, sharex=True)
    for label, video in results.items():
        curves = temporal_curves(video, colorfulness_variant)
        t = np.arange(curves["colorfulness"].shape[0])
        ax_c.plot(t, curves["colorfulness"], label=str(label), linewidth=1.4)
        ax_d.plot(t[1:], curves["cdc"], label=str(label), linewidth=1.4)
    ax_c.set_ylabel(f"colourfulness ({colorfulness_variant})")
    ax_d.set_ylabel("CDC ×1000 (t−1 → t)")
    ax_d.set_xlabel("frame")
    for ax in (ax_c, ax_d):
        ax.grid(True, alpha=0.3)
    ax_c.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
