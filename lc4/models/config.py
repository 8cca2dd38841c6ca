"""`LC4Config`: one serialisable description of an L-C4 model (sizes of every part, module choices).

Presets: `LC4Config.sd15()` (the paper's model on SD1.5) and `LC4Config.tiny()` (same topology,
a few hundred thousand parameters, for tests and CPU experiments). YAML files under
`configs/model/` name a preset with `base:` and override any field.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import sd15


@dataclass
class TemporalConfig:
    """The temporal module in every transformer block (TDA, or an ablation)."""

    kind: str = "tda"  # tda | temporal_attention | conv3d | none
    alpha: float = 4.0
    spatial_stride: int = 2  # N^rs
    temporal_stride: int = 2  # N^rt


@dataclass
class CMPFConfig:
    """Cross-Modality Pre-Fusion; `enabled: false` is the "w/o CMPF" ablation."""

    enabled: bool = True
    num_blocks: int = 2  # L
    heads: int = 8
    ff_mult: int = 4
    use_color_mask: bool = True  # false: the "removing mask" ablation
    spatial_stride: int = 2
    temporal_stride: int = 2
    alpha: float = 4.0


@dataclass
class LC4Config:
    """Everything needed to build an L-C4 model with random weights."""

    unet: dict[str, Any] = field(default_factory=lambda: sd15.config("sd15_unet"))
    vae: dict[str, Any] = field(default_factory=lambda: sd15.config("sd15_vae"))
    text: dict[str, Any] = field(default_factory=lambda: sd15.config("sd15_text"))
    scheduler: dict[str, Any] = field(default_factory=lambda: sd15.config("sd15_scheduler"))
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    cmpf: CMPFConfig = field(default_factory=CMPFConfig)
    num_frames: int = 8  # N^f
    resolution: int = 256
    tokenizer: str | None = None  # path of a CLIP tokenizer folder; None = CLIP BPE from open_clip
    # a pretrained text encoder referenced, not stored (folder, hub id or "pkg:<package>/<folder>",
    # lc4.models.text_reference); None = a CLIP text model built from `text` and saved with the model
    text_pretrained: str | None = None
    # not in L-C4 (docs/decisions.md): E^lum's latent-level feature maps also reach the UNet, through a
    # zero-initialised conv added to conv_in's output, next to the spec's 4-channel lum injection
    lum_features_to_unet: bool = False
    # not in L-C4 (docs/decisions.md): the UNet's cross-attention values of each colour phrase come
    # from that phrase encoded alone, its keys from the whole sentence (lc4.models.phrases)
    phrase_values: bool = False

    @classmethod
    def sd15(cls, **overrides: Any) -> "LC4Config":
        """The paper's model: SD1.5 parts, TDA α=4, N^rs=N^rt=2, CMPF L=2, N^f=8, 256²."""
        return cls.from_dict({"base": "sd15", **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "LC4Config":
        """Same topology, tiny widths: for tests and CPU experiments at 64–128 px."""
        return cls.from_dict({"base": "tiny", **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LC4Config":
        """Build from a (YAML) mapping; `base: sd15|tiny` picks the preset the fields override."""
        data = copy.deepcopy(dict(data))
        base = data.pop("base", "sd15")
        if base not in ("sd15", "tiny"):
            raise ValueError(f"unknown model base {base!r}; choose sd15 or tiny")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        cfg = cls(
            unet=sd15.config(f"{base}_unet"),
            vae=sd15.config(f"{base}_vae"),
            text=sd15.config(f"{base}_text"),
            scheduler=sd15.config("sd15_scheduler"),
            resolution=256 if base == "sd15" else 64,
            cmpf=CMPFConfig(heads=8 if base == "sd15" else 4),
        )
        for name in ("unet", "vae", "text", "scheduler"):
            getattr(cfg, name).update(data.pop(name, None) or {})
        cfg.temporal = TemporalConfig(**{**asdict(cfg.temporal), **(data.pop("temporal", None) or {})})
        cfg.cmpf = CMPFConfig(**{**asdict(cfg.cmpf), **(data.pop("cmpf", None) or {})})
        for key, value in data.items():
            setattr(cfg, key, value)
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "LC4Config":
        """Load a YAML or JSON model config; its `base:` may also be another model file (relative path)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        return cls.from_dict(_read_config_file(path))

    def to_dict(self) -> dict[str, Any]:
        """Fully spelled-out mapping (round-trips through `from_dict`)."""
        return asdict(self)

    def validate(self) -> None:
        """Check that the parts fit together, with one clear message per mismatch."""
        if self.unet["in_channels"] != self.vae["latent_channels"]:
            raise ValueError(
                f"UNet in_channels={self.unet['in_channels']} does not match the VAE's "
                f"latent_channels={self.vae['latent_channels']}"
            )
        if self.unet["cross_attention_dim"] != self.text["hidden_size"]:
            raise ValueError(
                f"UNet cross_attention_dim={self.unet['cross_attention_dim']} does not match the text "
                f"encoder's hidden_size={self.text['hidden_size']}"
            )
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        factor = 2 ** (len(self.vae["block_out_channels"]) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution {self.resolution} is not a multiple of the VAE factor {factor}")
        if self.text["hidden_size"] % self.cmpf.heads:
            raise ValueError(f"CMPF heads={self.cmpf.heads} do not divide text width {self.text['hidden_size']}")


def _read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of one model file, with a file `base:` (e.g. `base: demo.yaml`) merged under it."""
    if path.resolve() in seen:
        raise ValueError(f"model config {path}: its base files form a cycle")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
    else:
        data = json.loads(path.read_text())
    if "base" not in data and "unet" in data and "vae" in data:
        data = {"base": "sd15", **data}  # a saved, fully spelled-out config
    base = data.get("base")
    if isinstance(base, str) and base.endswith((".yaml", ".yml", ".json")):
        base_path = path.parent / base
        if not base_path.is_file():
            raise FileNotFoundError(f"model config {path}: base file {base_path} does not exist")
        merged = _read_config_file(base_path, (*seen, path.resolve()))
        for key, value in data.items():
            if key == "base":
                continue
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        data = merged
    return data
