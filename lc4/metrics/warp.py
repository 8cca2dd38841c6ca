"""Flow warping error E_warp (Lai et al. 2018), with the optical-flow estimator plugged in.

For consecutive frames a = V_{t−1}, b = V_t (RGB in [0, 1]) and the forward flow
``f = flow_fn(a, b)`` of shape ``(H, W, 2)`` holding (dx, dy) in pixels — pixel p of ``a`` is
seen at p + f(p) in ``b`` — frame ``b`` is sampled bilinearly at p + f(p) and compared with
``a``:

    E_t = Σ_p M(p) ‖a(p) − b̂(p)‖² / (3 · Σ_p M(p))

M is 1 where p + f(p) falls inside the frame, times an optional non-occlusion mask from
``mask_fn(a, b, f)``; if M is empty the sum is divided by 3·H·W (the rule of the reference
script). A video's E_warp is the mean over its T − 1 pairs; a single frame gives 0.0. No flow
network ships with lc4: pass e.g. a RAFT wrapper as ``flow_fn``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ._video import as_uint8_video

__all__ = ["FlowFn", "warp_frame", "warp_error_per_pair", "warp_error"]

FlowFn = Callable[[np.ndarray, np.ndarray], Any]


def _check_flow(flow: Any, h: int, w: int) -> np.ndarray:
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    if f.shape != (h, w, 2):
        raise ValueError(f"flow_fn must return an (H, W, 2) = ({h}, {w}, 2) flow; got shape {f.shape}")
    return f.astype(np.float64)


def warp_frame(frame: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``frame`` (H, W, C) at p + flow(p); returns (warped, inside-mask (H, W) bool)."""
    h, w = frame.shape[:2]
    flow = _check_flow(flow, h, w)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    gx = 2.0 * x / max(w - 1, 1) - 1.0
    gy = 2.0 * y / max(h - 1, 1) - 1.0
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1))[None]
    src = torch.from_numpy(rearrange(frame.astype(np.float64), "h w c -> 1 c h w").copy())
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return rearrange(out[0].numpy(), "c h w -> h w c"), inside


def warp_error_per_pair(
    video: Any, flow_fn: FlowFn, mask_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], Any] | None = None
) -> np.ndarray:
    """E_warp of every consecutive pair, shape ``(T − 1,)``; frames go to ``flow_fn`` as uint8 (H, W, 3)."""
    v = as_uint8_video(video)
    t, h, w, _ = v.shape
    errs = []
    for i in range(1, t):
        a8, b8 = v[i - 1], v[i]
        flow = _check_flow(flow_fn(a8, b8), h, w)
        a, b = a8.astype(np.float64) / 255.0, b8.astype(np.float64) / 255.0
        warped, inside = warp_frame(b, flow)
        mask = inside.astype(np.float64)
        if mask_fn is not None:
            extra = np.asarray(mask_fn(a8, b8, flow), dtype=np.float64)
            if extra.shape != (h, w):
                raise ValueError(f"mask_fn must return an (H, W) = ({h}, {w}) mask; got shape {extra.shape}")
            mask = mask * extra
        sq = (((a - warped) ** 2).sum(axis=-1) * mask).sum()
        n = 3.0 * mask.sum()
        errs.append(sq / (n if n > 0 else 3.0 * h * w))
    return np.asarray(errs, dtype=np.float64)


def warp_error(
    video: Any, flow_fn: FlowFn, mask_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], Any] | None = None
) -> float:
    """Mean of :func:`warp_error_per_pair` (0.0 for a single frame). Lower is more consistent."""
    errs = warp_error_per_pair(video, flow_fn, mask_fn)
    return float(errs.mean()) if errs.size else 0.0
