"""Input coercion shared by the metrics: one place that decides what a "video" is.

A video is a ``(T, H, W, 3)`` RGB array (NumPy or torch). Integer dtypes are read as 0–255;
floating dtypes must lie in [0, 1] and are rounded to 0–255, so every metric works in the
8-bit units published numbers use. A single frame ``(H, W, 3)`` is accepted where documented.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_uint8_video", "as_float_video", "check_same_shape"]


def _to_numpy(x: Any) -> np.ndarray:
    """Tensor or array-like → NumPy array, without copying when possible."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return np.asarray(x)


def _check_layout(arr: np.ndarray, name: str, allow_frame: bool) -> np.ndarray:
    if allow_frame and arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        want = "(T, H, W, 3) or (H, W, 3)" if allow_frame else "(T, H, W, 3)"
        raise ValueError(f"{name} must have shape {want} RGB; got shape {tuple(arr.shape)}")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name} must have at least one frame of at least 1x1 pixels; got shape {tuple(arr.shape)}")
    return arr


def as_float_video(x: Any, name: str = "video", allow_frame: bool = False) -> np.ndarray:
    """Return ``x`` as a float64 ``(T, H, W, 3)`` array in 0–255 units (not rounded)."""
    arr = _check_layout(_to_numpy(x), name, allow_frame)
    if arr.dtype == np.bool_:
        raise ValueError(f"{name} must be uint8 (0-255) or float in [0, 1]; got dtype bool")
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{name} integer values must lie in [0, 255]; got range [{lo}, {hi}]")
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or Inf values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(f"{name} float values must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
        return np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0
    raise ValueError(f"{name} must be uint8 (0-255) or float in [0, 1]; got dtype {arr.dtype}")


def as_uint8_video(x: Any, name: str = "video", allow_frame: bool = False) -> np.ndarray:
    """Return ``x`` as a uint8 ``(T, H, W, 3)`` array (float inputs in [0, 1] are rounded)."""
    arr = _to_numpy(x)
    if arr.dtype == np.uint8:
        return _check_layout(arr, name, allow_frame)
    return np.rint(as_float_video(arr, name, allow_frame)).astype(np.uint8)


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "gt")) -> None:
    """Raise a ValueError when two videos do not have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
