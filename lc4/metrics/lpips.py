"""LPIPS (Zhang et al. 2018), AlexNet backbone with the v0.1 linear heads, in plain torch.

torchvision is not a dependency, so the AlexNet feature stack is written here with the same
module indices as ``torchvision.models.alexnet().features``; the torchvision ImageNet checkpoint
``alexnet-owt-7be5be79.pth`` therefore loads as is (its ``classifier.*`` tensors are ignored).
The linear heads load from the lpips package's ``weights/v0.1/alex.pth`` (keys
``lin{k}.model.1.weight``, shape ``(1, C_k, 1, 1)``).

Computation (lpips v0.1, ``spatial=False``): inputs in [−1, 1] are shifted/scaled per channel,
features are taken after the five ReLUs, unit-normalised along channels (ε = 1e−10), their
squared difference is weighted by the 1×1 linear head, averaged over space and summed over
layers. A video's value is the mean over frames.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

from ._video import as_float_video, check_same_shape
from .weights import WeightFile, require_weight_files

__all__ = [
    "ALEXNET_FILE",
    "LPIPS_HEADS_FILE",
    "AlexNetFeatures",
    "LPIPS",
    "load_lpips",
    "lpips_per_frame",
    "lpips",
]

ALEXNET_FILE = WeightFile(
    "alexnet-owt-7be5be79.pth",
    "torchvision AlexNet ImageNet weights",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
LPIPS_HEADS_FILE = WeightFile(
    "alex.pth",
    "LPIPS v0.1 linear heads for AlexNet, lpips package lpips/weights/v0.1/alex.pth",
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
)

#: channels of the five tapped ReLU outputs
CHANNELS = (64, 192, 384, 256, 256)
#: (start, stop) indices into ``features`` of the five slices ending at those ReLUs
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional stack; ``self.features`` indices equal torchvision's."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs (relu1 … relu5) for a ``(N, 3, H, W)`` batch."""
        taps = []
        for start, stop in SLICES:
            for i in range(start, stop):
                x = self.features[i](x)
            taps.append(x)
        return taps


class _LinearHead(nn.Module):
    """1×1 conv to one channel, no bias; ``model.1`` matches the lpips key layout."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS distance with an AlexNet backbone; ``forward(a, b)`` takes ``(N, 3, H, W)`` in [−1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", _LinearHead(c))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    @staticmethod
    def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        return x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + eps)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS, shape ``(N,)``."""
        fa = self.net((a - self.shift) / self.scale)
        fb = self.net((b - self.shift) / self.scale)
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for i, (x, y) in enumerate(zip(fa, fb)):
            d = (self._unit(x) - self._unit(y)) ** 2
            total = total + getattr(self, f"lin{i}")(d).mean(dim=(1, 2, 3))
        return total

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load torchvision AlexNet weights (``features.*`` keys; other keys are ignored)."""
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            raise ValueError("AlexNet checkpoint has no 'features.*' tensors; expected torchvision's alexnet state dict")
        self.net.features.load_state_dict(feats, strict=True)

    def load_heads(self, state: dict[str, torch.Tensor]) -> None:
        """Load lpips v0.1 linear heads (``lin{k}.model.1.weight``)."""
        heads = {k: v for k, v in state.items() if k.startswith("lin")}
        expected = {f"lin{i}.model.1.weight" for i in range(len(CHANNELS))}
        if set(heads) != expected:
            raise ValueError(f"LPIPS head file must hold exactly {sorted(expected)}; got {sorted(heads)}")
        for i in range(len(CHANNELS)):
            getattr(self, f"lin{i}").load_state_dict({"model.1.weight": heads[f"lin{i}.model.1.weight"]})


def _lpips_package_weights() -> list[Path]:
    """The lpips package's weights folder, found without importing it (it imports torchvision)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin:
        return []
    return [Path(spec.origin).parent / "weights" / "v0.1"]


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``.pth`` file; a damaged or foreign file is one ValueError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a pickle of other objects, ...
        raise ValueError(f"LPIPS weight file {path} is damaged or not a PyTorch state dict "
                         f"({type(exc).__name__}: {_first_line(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS weight file {path} does not hold a state dict")
    return state


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_lpips(
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    backbone_path: str | os.PathLike | None = None,
    heads_path: str | os.PathLike | None = None,
) -> LPIPS:
    """Build :class:`LPIPS` and load its two weight files (FileNotFoundError names missing ones)."""
    missing = []
    if backbone_path is None:
        missing.append(ALEXNET_FILE)
    if heads_path is None:
        missing.append(LPIPS_HEADS_FILE)
    found = iter(require_weight_files("LPIPS", missing, weights_dir, _lpips_package_weights()))
    backbone = Path(backbone_path) if backbone_path is not None else next(found)
    heads = Path(heads_path) if heads_path is not None else next(found)
    for p in (backbone, heads):
        if not p.is_file():
            raise FileNotFoundError(f"LPIPS weight file not found: {p}")
    model = LPIPS()
    for path, load in ((backbone, model.load_backbone), (heads, model.load_heads)):
        state = _load_state(path)
        try:
            load(state)
        except (ValueError, RuntimeError) as exc:  # the wrong file, or tensors of the wrong shapes
            raise ValueError(f"LPIPS weight file {path} does not fit: {_first_line(exc)}") from None
    return model.to(device)


def _to_unit_range(video: Any, name: str) -> torch.Tensor:
    v = as_float_video(video, name, allow_frame=True)
    return torch.from_numpy(rearrange(v, "t h w c -> t c h w") / 127.5 - 1.0).float()


@torch.no_grad()
def lpips_per_frame(pred: Any, gt: Any, model: LPIPS, batch_size: int = 8) -> np.ndarray:
    """Per-frame LPIPS of two RGB videos (uint8 or float [0, 1]), shape ``(T,)``."""
    p, g = _to_unit_range(pred, "pred"), _to_unit_range(gt, "gt")
    check_same_shape(p, g)
    device = next(model.parameters()).device
    out = []
    for s in range(0, p.shape[0], max(1, int(batch_size))):
        out.append(model(p[s : s + batch_size].to(device), g[s : s + batch_size].to(device)).double().cpu())
    return torch.cat(out).numpy()


def lpips(pred: Any, gt: Any, model: LPIPS | None = None, weights_dir: str | os.PathLike | None = None) -> float:
    """Mean LPIPS over frames; loads the model from ``weights_dir`` / the cache when not given."""
    model = model if model is not None else load_lpips(weights_dir)
    return float(lpips_per_frame(pred, gt, model).mean())
