"""`LC4Config`: one serialisable description of an L-C4 model (sizes of every part, module choices).

Presets: `LC4Config.sd15()` (the paper's model on SD1.5) and `LC4Config.tiny()` (same topology,
a few hundred thousand parameters, for tests and CPU experiments). YAML files under
`configs/model/` name a preset with `base:` and override any field.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
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
    position_bias: bool = False  # TDA only: a learned query–sampling-point distance bias (not in L-C4)
    padding: str = "zeros"  # TDA only: what a point outside the clip reads: zeros (eq. 2) | border (not in L-C4)
    position_bias_sigma: tuple = (1.0, 16.0)  # TDA only: the bias heads' spatial widths at start (compressed cells)


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
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a mapping of fields; got {type(data).__name__}")
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
            getattr(cfg, name).update(_mapping(data.pop(name, None), name))
        cfg.temporal = _section(TemporalConfig, cfg.temporal, data.pop("temporal", None), "temporal")
        cfg.cmpf = _section(CMPFConfig, cfg.cmpf, data.pop("cmpf", None), "cmpf")
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
        data = _read_config_file(path)
        try:
            return cls.from_dict(data)
        except ValueError as exc:  # name the file the bad field came from
            raise ValueError(f"model config {path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Fully spelled-out mapping (round-trips through `from_dict`)."""
        return asdict(self)

    def validate(self) -> None:
        """Check every field's type and range and that the parts fit together: one clear
        `ValueError` naming the field (e.g. `temporal.alpha`) per problem, before anything is built."""
        for name in ("unet", "vae", "text", "scheduler"):
            _mapping(getattr(self, name), name)
        check_unet_config(self.unet, "unet")
        check_vae_config(self.vae, "vae")
        check_text_config(self.text, "text")
        check_scheduler_config(self.scheduler, "scheduler")
        t, c = self.temporal, self.cmpf
        if not isinstance(t, TemporalConfig) or not isinstance(c, CMPFConfig):
            raise ValueError("temporal and cmpf must be TemporalConfig and CMPFConfig sections")
        check_temporal_kind(t.kind, "temporal.kind")
        check_number(t.alpha, "temporal.alpha", minimum=0.0)
        check_int(t.spatial_stride, "temporal.spatial_stride", minimum=1)
        check_int(t.temporal_stride, "temporal.temporal_stride", minimum=1)
        check_bool(t.position_bias, "temporal.position_bias")
        check_padding(t.padding, "temporal.padding")
        check_bias_sigma(t.position_bias_sigma, "temporal.position_bias_sigma")
        check_bool(c.enabled, "cmpf.enabled")
        check_int(c.num_blocks, "cmpf.num_blocks", minimum=0)
        check_int(c.heads, "cmpf.heads", minimum=1)
        check_int(c.ff_mult, "cmpf.ff_mult", minimum=1)
        check_bool(c.use_color_mask, "cmpf.use_color_mask")
        check_int(c.spatial_stride, "cmpf.spatial_stride", minimum=1)
        check_int(c.temporal_stride, "cmpf.temporal_stride", minimum=1)
        check_number(c.alpha, "cmpf.alpha", minimum=0.0)
        check_int(self.num_frames, "num_frames", minimum=1)
        check_int(self.resolution, "resolution", minimum=1)
        for key in ("tokenizer", "text_pretrained"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be a path string or null; got {value!r}")
        check_bool(self.lum_features_to_unet, "lum_features_to_unet")
        check_bool(self.phrase_values, "phrase_values")
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
        factor = 2 ** (len(self.vae["block_out_channels"]) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution {self.resolution} is not a multiple of the VAE factor {factor}")
        if self.text["hidden_size"] % self.cmpf.heads:
            raise ValueError(f"CMPF heads={self.cmpf.heads} do not divide text width {self.text['hidden_size']}")


# ---------------------------------------------------------------------------------- validation
# Shared by LC4Config.validate, LC4UNet and LC4Model.from_pretrained (which checks every part's
# config.json before any weights are read). Each raises one ValueError line naming the field.

def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value: Any, field: str, minimum: int | None = None) -> int:
    """`value` must be an int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{field} must be an integer; got {_show(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field} must be >= {minimum}; got {value}")
    return int(value)


def check_number(value: Any, field: str, minimum: float | None = None, positive: bool = False) -> float:
    """`value` must be a finite real number (not a bool, not NaN/inf) >= `minimum` (> 0 if `positive`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{field} must be a number; got {_show(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{field} must be a finite number; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field} must be >= {minimum:g}; got {value}")
    if positive and value <= 0:
        raise ValueError(f"{field} must be > 0; got {value}")
    return float(value)


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false; got {_show(value)}")
    return value


def check_padding(value: Any, field: str) -> str:
    """`zeros` (eq. 2) or `border`: what TDA's sampling points outside the clip read."""
    from .tda import SAMPLE_PADDINGS

    if value not in SAMPLE_PADDINGS:
        raise ValueError(f"{field}: must be one of {', '.join(SAMPLE_PADDINGS)}; got {value!r}")
    return value


def check_bias_sigma(value: Any, field: str) -> tuple[float, float]:
    """The TDA distance bias's spatial widths at start: two numbers 0 < low <= high."""
    from .tda import check_sigma_range

    return check_sigma_range(value, field)


def check_temporal_kind(kind: Any, field: str = "temporal_module") -> str:
    """One of `lc4.models.tda.TEMPORAL_KINDS`."""
    from .tda import TEMPORAL_KINDS

    if not isinstance(kind, str) or kind not in TEMPORAL_KINDS:
        raise ValueError(f"{field}: unknown temporal_module {kind!r}; choose one of {', '.join(TEMPORAL_KINDS)}")
    return kind


def _int_list(value: Any, field: str, minimum: int = 1) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{field} must be a non-empty list of integers; got {_show(value)}")
    return [check_int(v, f"{field}[{i}]", minimum) for i, v in enumerate(value)]


def _str_list(value: Any, field: str, length: int, length_of: str) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field} must be a list of block type names; got {_show(value)}")
    if len(value) != length:
        raise ValueError(f"{field} has {len(value)} entries but {length_of} has {length}")


def _int_or_list(cfg: dict, key: str, where: str, levels: int, optional: bool = False) -> None:
    value = cfg.get(key)
    if value is None and optional:
        return
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise ValueError(f"{where}.{key} has {len(value)} entries but block_out_channels has {levels}")
        for i, v in enumerate(value):
            check_int(v, f"{where}.{key}[{i}]", 1)
    else:
        check_int(value, f"{where}.{key}", 1)


def _check_blocks(cfg: dict, where: str, channels_key: str = "block_out_channels",
                  types: tuple[str, ...] = ("down_block_types", "up_block_types")) -> list[int]:
    channels = _int_list(cfg.get(channels_key), f"{where}.{channels_key}")
    for key in types:
        if key in cfg:
            _str_list(cfg[key], f"{where}.{key}", len(channels), f"{where}.{channels_key}")
    groups = cfg.get("norm_num_groups")
    if groups is not None:
        check_int(groups, f"{where}.norm_num_groups", 1)
        bad = [c for c in channels if c % groups]
        if bad:
            raise ValueError(f"{where}.norm_num_groups={groups} does not divide {where}.{channels_key} {bad}")
    return channels


def check_unet_config(cfg: Any, where: str = "unet") -> None:
    """The fields of a diffusers `UNet2DConditionModel` config that L-C4 relies on."""
    cfg = _mapping(cfg, where)
    levels = len(_check_blocks(cfg, where))
    for key in ("in_channels", "out_channels", "cross_attention_dim"):
        check_int(cfg.get(key), f"{where}.{key}", 1)
    _int_or_list(cfg, "layers_per_block", where, levels)
    _int_or_list(cfg, "attention_head_dim", where, levels, optional=True)
    _int_or_list(cfg, "num_attention_heads", where, levels, optional=True)


def check_vae_config(cfg: Any, where: str = "vae") -> None:
    """The fields of a diffusers `AutoencoderKL` config that L-C4 relies on."""
    cfg = _mapping(cfg, where)
    _check_blocks(cfg, where)
    for key in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
        check_int(cfg.get(key), f"{where}.{key}", 1)
    if cfg.get("scaling_factor") is not None:
        check_number(cfg["scaling_factor"], f"{where}.scaling_factor", positive=True)


def check_text_config(cfg: Any, where: str = "text") -> None:
    """The fields of a CLIP text config that L-C4 relies on."""
    cfg = _mapping(cfg, where)
    width = check_int(cfg.get("hidden_size"), f"{where}.hidden_size", 1)
    for key in ("num_attention_heads", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
                "vocab_size"):
        if key in cfg:
            check_int(cfg[key], f"{where}.{key}", 1)
    heads = cfg.get("num_attention_heads")
    if heads is not None and width % heads:
        raise ValueError(f"{where}.num_attention_heads={heads} does not divide {where}.hidden_size={width}")


def check_scheduler_config(cfg: Any, where: str = "scheduler") -> None:
    """The noise-schedule fields: a positive step count and finite betas."""
    cfg = _mapping(cfg, where)
    if "num_train_timesteps" in cfg:
        check_int(cfg["num_train_timesteps"], f"{where}.num_train_timesteps", 1)
    for key in ("beta_start", "beta_end"):
        if key in cfg:
            check_number(cfg[key], f"{where}.{key}", positive=True)


def check_cmpf_config(cfg: Any, where: str = "cmpf") -> None:
    """A saved `CrossModalityPreFusion` config (`cmpf/config.json`)."""
    cfg = _mapping(cfg, where)
    width = check_int(cfg.get("text_dim", 768), f"{where}.text_dim", 1)
    check_int(cfg.get("lum_channels", 512), f"{where}.lum_channels", 1)
    check_int(cfg.get("num_blocks", 2), f"{where}.num_blocks", 0)
    heads = check_int(cfg.get("heads", 8), f"{where}.heads", 1)
    if width % heads:
        raise ValueError(f"{where}.heads={heads} does not divide {where}.text_dim={width}")
    check_int(cfg.get("ff_mult", 4), f"{where}.ff_mult", 1)
    check_int(cfg.get("spatial_stride", 2), f"{where}.spatial_stride", 1)
    check_int(cfg.get("temporal_stride", 2), f"{where}.temporal_stride", 1)
    check_number(cfg.get("alpha", 4.0), f"{where}.alpha", minimum=0.0)
    check_bool(cfg.get("use_color_mask", True), f"{where}.use_color_mask")


def check_lc4_unet_config(cfg: Any, where: str = "unet") -> None:
    """A saved `LC4UNet` config (`unet/config.json`): the temporal options and the inner UNet."""
    cfg = _mapping(cfg, where)
    check_unet_config(cfg.get("unet_config"), f"{where}.unet_config")
    check_temporal_kind(cfg.get("temporal_module", "tda"), f"{where}.temporal_module")
    check_number(cfg.get("tda_alpha", 4.0), f"{where}.tda_alpha", minimum=0.0)
    check_int(cfg.get("tda_spatial_stride", 2), f"{where}.tda_spatial_stride", 1)
    check_int(cfg.get("tda_temporal_stride", 2), f"{where}.tda_temporal_stride", 1)
    check_bool(cfg.get("tda_position_bias", False), f"{where}.tda_position_bias")
    check_padding(cfg.get("tda_padding", "zeros"), f"{where}.tda_padding")
    check_bias_sigma(cfg.get("tda_position_bias_sigma", (1.0, 16.0)), f"{where}.tda_position_bias_sigma")
    check_int(cfg.get("lum_channels", 8), f"{where}.lum_channels", 1)
    check_int(cfg.get("lum_feature_channels", 0), f"{where}.lum_feature_channels", 0)
    check_bool(cfg.get("phrase_values", False), f"{where}.phrase_values")


def check_luminance_config(cfg: Any, where: str = "lum_encoder") -> None:
    """A saved `LuminanceEncoder` config (`lum_encoder/config.json`)."""
    cfg = _mapping(cfg, where)
    _check_blocks(cfg, where, types=("down_block_types",))
    if cfg.get("decoder_block_out_channels") is not None:
        _int_list(cfg["decoder_block_out_channels"], f"{where}.decoder_block_out_channels")
    for key in ("latent_channels", "layers_per_block"):
        if key in cfg:
            check_int(cfg[key], f"{where}.{key}", 1)


def _mapping(value: Any, field: str) -> dict:
    """`value` as a dict (None → {}); anything else is a ValueError naming `field`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a mapping of settings; got {_show(value)}")
    return value


def _section(kind: type, current: Any, value: Any, field: str) -> Any:
    """A `TemporalConfig` / `CMPFConfig` with `value`'s keys over `current`'s; unknown keys named."""
    value = _mapping(value, field)
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown {field} config keys: {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")
    return kind(**{**asdict(current), **value})


def _read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of one model file, with a file `base:` (e.g. `base: demo.yaml`) merged under it."""
    if path.resolve() in seen:
        raise ValueError(f"model config {path}: its base files form a cycle")
    data = read_config_mapping(path)
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


def read_config_mapping(path: Path, what: str = "model config") -> dict[str, Any]:
    """The mapping stored in a JSON or YAML file; a broken or non-mapping file is a ValueError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None
        data = {} if data is None else data
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping of fields; got {type(data).__name__}")
    return data
