"""Fréchet Inception Distance with the Inception TorchScript detector of StyleGAN2-ADA.

Every frame of every video is one sample (uint8 ``(B, 3, H, W)`` in, 2048-d pool features
out; the detector resizes to 299×299 itself). Gaussian fit with population covariance, then
:func:`frechet_distance`. Not a column of the L-C4 tables; the survey lists it for other papers.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from einops import rearrange

from ._video import as_uint8_video
from .detectors import INCEPTION_FILE, INCEPTION_KWARGS, load_torchscript_detector, run_detector
from .frechet import frechet_distance, gaussian_stats

__all__ = ["load_inception", "inception_features", "fid"]


def load_inception(
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.jit.ScriptModule:
    """Load ``inception-2015-12-05.pt`` (FileNotFoundError names the file and where to put it)."""
    return load_torchscript_detector("FID", INCEPTION_FILE, path, weights_dir, device)


def _frame_batches(videos: Iterable[Any], batch_size: int) -> Iterator[np.ndarray]:
    for video in videos:
        v = rearrange(as_uint8_video(video, allow_frame=True), "t h w c -> t c h w")
        for s in range(0, v.shape[0], batch_size):
            yield v[s : s + batch_size]


def inception_features(
    videos: Iterable[Any], detector: Any, batch_size: int = 32, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Inception features ``(N_frames, D)`` of all frames of ``videos`` (each a video or a frame)."""
    return run_detector(detector, _frame_batches(videos, max(1, int(batch_size))), INCEPTION_KWARGS, device)


def fid(
    pred_videos: Iterable[Any],
    gt_videos: Iterable[Any],
    detector: Any = None,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> float:
    """FID between the frames of two sets of RGB videos."""
    detector = detector if detector is not None else load_inception(weights_dir=weights_dir, device=device)
    fp = inception_features(pred_videos, detector, device=device)
    fg = inception_features(gt_videos, detector, device=device)
    return frechet_distance(*gaussian_stats(fp), *gaussian_stats(fg))
