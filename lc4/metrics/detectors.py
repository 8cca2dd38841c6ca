"""Loading the TorchScript feature detectors that FID and FVD are defined with.

Both files are TorchScript archives published with NVIDIA's StyleGAN metric code, so they load
with ``torch.jit.load`` (TorchScript's own restricted format, not a Python pickle) and need no
model code here. Each is called with uint8 pixels and keyword flags, the way the original metric
code calls it; the ``*_KWARGS`` constants record those flags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .weights import WeightFile, require_weight_files

__all__ = ["I3D_FILE", "INCEPTION_FILE", "I3D_KWARGS", "INCEPTION_KWARGS", "load_torchscript_detector", "run_detector"]

I3D_FILE = WeightFile(
    "i3d_torchscript.pt",
    "I3D Kinetics-400 TorchScript detector of the StyleGAN-V FVD code",
    "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
)
INCEPTION_FILE = WeightFile(
    "inception-2015-12-05.pt",
    "Inception-v3 TorchScript detector of the StyleGAN2-ADA FID code",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
)
#: I3D input: uint8 (B, 3, T, H, W); the detector rescales to [-1, 1] and resizes to 224×224
#: itself and returns the 400-d pre-softmax features (StyleGAN-V's compute_fvd).
I3D_KWARGS: dict[str, bool] = {"rescale": True, "resize": True, "return_features": True}
#: Inception input: uint8 (B, 3, H, W) of any size; returns 2048-d pool features (StyleGAN2-ADA).
INCEPTION_KWARGS: dict[str, bool] = {"return_features": True}


def load_torchscript_detector(
    metric: str,
    file: WeightFile,
    path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.jit.ScriptModule:
    """Load a detector from ``path`` or ``<weights_dir|hub cache>/<file.filename>``."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{metric} detector file not found: {p} (expected {file.filename}, from {file.url})")
    else:
        (p,) = require_weight_files(metric, [file], weights_dir)
    try:
        return torch.jit.load(str(p), map_location=device).eval()
    except Exception as exc:  # truncated download, an HTML error page, a plain pickle, ...
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise ValueError(
            f"{metric} detector file {p} is damaged or not a TorchScript archive ({type(exc).__name__}: {detail}); "
            f"download {file.filename} again from {file.url}"
        ) from None


@torch.no_grad()
def run_detector(
    detector: Any, batches: Iterable[np.ndarray], kwargs: dict[str, bool], device: str | torch.device = "cpu"
) -> np.ndarray:
    """Feed uint8 channel-first batches through ``detector``; stack the features as float64 (N, D)."""
    feats = []
    for batch in batches:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        out = detector(x, **kwargs)
        if out.ndim != 2:
            out = out.reshape(out.shape[0], -1)
        feats.append(out.double().cpu().numpy())
    if not feats:
        raise ValueError("no inputs were given to the feature detector")
    return np.concatenate(feats, axis=0)
