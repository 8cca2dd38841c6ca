"""lc4: language-guided, temporally consistent video colorization (L-C4) on Stable Diffusion 1.5.

Public surface::

    pipe = lc4.LC4Pipeline.from_pretrained("path/or/hub-id")
    pipe = lc4.LC4Pipeline.from_sd15("path/to/sd15", config=lc4.LC4Config.sd15())
    pipe = lc4.LC4Pipeline.from_config(lc4.LC4Config.tiny())
    frames = pipe(video, prompt="a girl in a red coat").frames
    lc4.metrics.cdc(video); lc4.ccf.skip_window_clips(num_frames, clip_frames=8)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LC4Pipeline": ("lc4.pipeline", "LC4Pipeline"),
    "LC4Output": ("lc4.pipeline", "LC4Output"),
    "LC4Model": ("lc4.models.lc4", "LC4Model"),
    "LC4Config": ("lc4.models.config", "LC4Config"),
    "LC4UNet": ("lc4.models.unet", "LC4UNet"),
    "LuminanceEncoder": ("lc4.models.luminance", "LuminanceEncoder"),
    "CrossModalityPreFusion": ("lc4.models.cmpf", "CrossModalityPreFusion"),
    "TemporalDeformableAttention": ("lc4.models.tda", "TemporalDeformableAttention"),
}
_SUBMODULES = ("ccf", "metrics", "color", "io", "data", "models", "training", "evaluation", "sampling", "prompts")


def __getattr__(name: str) -> Any:
    """Import heavy parts on first use, so `import lc4` stays fast."""
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"lc4.{name}")
    raise AttributeError(f"module 'lc4' has no attribute {name!r}")


__all__ = [*_LAZY, *_SUBMODULES, "__version__"]
