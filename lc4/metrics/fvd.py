"""Fréchet Video Distance with the I3D TorchScript detector of the StyleGAN-V FVD code.

Each video is cut into non-overlapping clips of ``clip_frames`` consecutive frames (default 16,
StyleGAN-V's default); frames after the last full clip are not used, and a video shorter than
one clip gives one clip padded by repeating its last frame. Every clip is one sample: I3D
features (400-d, pre-softmax) of all predicted clips and of all ground-truth clips are fitted
with Gaussians (population covariance) and compared with :func:`frechet_distance`. FVD is a
dataset-level number; it needs at least two clips per side.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from einops import rearrange

from ._video import as_uint8_video
from .detectors import I3D_FILE, I3D_KWARGS, load_torchscript_detector, run_detector
from .frechet import frechet_distance, gaussian_stats

__all__ = ["load_i3d", "video_clips", "i3d_features", "fvd_from_features", "fvd"]


def load_i3d(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.jit.ScriptModule:
    """Load ``i3d_torchscript.pt`` (FileNotFoundError names the file and where to put it)."""
    return load_torchscript_detector("FVD", I3D_FILE, path, weights_dir, device)


def video_clips(video: Any, clip_frames: int = 16) -> np.ndarray:
    """Non-overlapping clips ``(N, clip_frames, H, W, 3)`` uint8, as described in the module doc."""
    if int(clip_frames) < 1:
        raise ValueError(f"clip_frames must be >= 1; got {clip_frames}")
    v = as_uint8_video(video)
    n = int(clip_frames)
    if v.shape[0] < n:
        pad = np.repeat(v[-1:], n - v.shape[0], axis=0)
        return np.concatenate([v, pad], axis=0)[None]
    usable = (v.shape[0] // n) * n
    return rearrange(v[:usable], "(k t) h w c -> k t h w c", t=n)


def _clip_batches(videos: Iterable[Any], clip_frames: int, batch_size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    for video in videos:
        clips = rearrange(video_clips(video, clip_frames), "k t h w c -> k c t h w")
        pending.extend(clips)
        while len(pending) >= batch_size:
            yield np.stack(pending[:batch_size])
            pending = pending[batch_size:]
    if pending:
        yield np.stack(pending)


def i3d_features(
    videos: Iterable[Any],
    detector: Any,
    clip_frames: int = 16,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """I3D features ``(N_clips, D)`` of the clips of all ``videos`` (same frame size within a batch)."""
    return run_detector(detector, _clip_batches(videos, clip_frames, max(1, int(batch_size))), I3D_KWARGS, device)


def fvd_from_features(pred_features: Any, gt_features: Any) -> float:
    """FVD from precomputed detector features of the two sets."""
    return frechet_distance(*gaussian_stats(pred_features), *gaussian_stats(gt_features))


def fvd(
    pred_videos: Iterable[Any],
    gt_videos: Iterable[Any],
    detector: Any = None,
    weights_dir: str | os.PathLike | None = None,
    clip_frames: int = 16,
    device: str | torch.device = "cpu",
) -> float:
    """FVD between two sets of ``(T, H, W, 3)`` RGB videos."""
    detector = detector if detector is not None else load_i3d(weights_dir=weights_dir, device=device)
    fp = i3d_features(pred_videos, detector, clip_frames, device=device)
    fg = i3d_features(gt_videos, detector, clip_frames, device=device)
    return fvd_from_features(fp, fg)
