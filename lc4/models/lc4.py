"""`LC4Model`: the container that holds every part of L-C4 and saves/loads them diffusers-style.

On disk (`save_pretrained`) a model is a folder in the diffusers pipeline layout::

    model_index.json   lc4_config.json
    vae/  lum_encoder/  unet/  cmpf/  text_encoder/  tokenizer/  scheduler/

each part in its library's own format (safetensors + config); a model whose config references a
pretrained text encoder (`text_pretrained`, `lc4.models.text_reference`) has no `text_encoder/`
or `tokenizer/`. Builders:

* `from_config(LC4Config)` — random weights (tests, CPU experiments, training from scratch);
* `from_sd15(folder_or_hub_id)` — a diffusers SD1.5 folder; new parts at their zero initialisation,
  so the fresh model reproduces SD1.5;
* `from_single_file(path)` — an original-layout SD1.5 checkpoint (`.safetensors`/`.ckpt`);
* `from_pretrained(folder_or_hub_id)` — a saved L-C4 model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from .cmpf import CrossModalityPreFusion
from .config import (CMPFConfig, LC4Config, TemporalConfig, check_cmpf_config, check_lc4_unet_config,
                     check_luminance_config, check_scheduler_config, check_text_config, check_vae_config,
                     read_config_mapping)
from .luminance import LuminanceEncoder, LuminanceFeatures, inject_decoder_skips
from .phrases import phrase_values
from .text import TextConditioning, encode_prompts
from .unet import LC4UNet

MODEL_INDEX = "model_index.json"
CONFIG_NAME = "lc4_config.json"
SD15_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _resolve_folder(name_or_path: str | os.PathLike, what: str, allow_patterns: Sequence[str] | None = None) -> Path:
    """A local folder as is; otherwise a hub id fetched with huggingface_hub (clear error offline)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{what} must be a folder or a hub id, got the file {path}")
        return path
    if str(name_or_path).count("/") != 1 or str(name_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(f"{what} not found: {name_or_path}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=allow_patterns))
    except Exception as exc:  # network, auth, offline mode
        raise FileNotFoundError(
            f"{what} {name_or_path!r} is neither a local folder nor downloadable from the hub ({type(exc).__name__})"
        ) from None


class LC4Model(nn.Module):
    """All L-C4 parts: VAE, E^lum (+ decoder skips), UNet with TDA, CLIP text encoder, CMPF."""

    def __init__(
        self,
        config: LC4Config,
        vae: AutoencoderKL,
        lum_encoder: LuminanceEncoder,
        unet: LC4UNet,
        text_encoder: CLIPTextModel,
        tokenizer: Any,
        cmpf: CrossModalityPreFusion | None,
    ):
        super().__init__()
        self.config = config
        self.vae, self.lum_encoder, self.unet = vae, lum_encoder, unet
        self.text_encoder, self.cmpf = text_encoder, cmpf
        self.tokenizer = tokenizer

    # ----------------------------------------------------------------- builders
    @staticmethod
    def _new_parts(config: LC4Config, vae: AutoencoderKL, unet: UNet2DConditionModel, text_dim: int):
        t: TemporalConfig = config.temporal
        lum = LuminanceEncoder.from_vae(vae)
        lc4_unet = LC4UNet.from_unet(
            unet, temporal_module=t.kind, tda_alpha=t.alpha, tda_spatial_stride=t.spatial_stride,
            tda_temporal_stride=t.temporal_stride, tda_position_bias=t.position_bias,
            tda_padding=t.padding, tda_position_bias_sigma=tuple(t.position_bias_sigma), lum_channels=2 * vae.config.latent_channels,
            lum_feature_channels=vae.config.block_out_channels[-1] if config.lum_features_to_unet else 0,
            phrase_values=config.phrase_values,
        )
        c: CMPFConfig = config.cmpf
        cmpf = None
        if c.enabled:
            cmpf = CrossModalityPreFusion(
                text_dim=text_dim, lum_channels=vae.config.block_out_channels[-1], num_blocks=c.num_blocks,
                heads=c.heads, ff_mult=c.ff_mult, spatial_stride=c.spatial_stride,
                temporal_stride=c.temporal_stride, alpha=c.alpha, use_color_mask=c.use_color_mask,
            )
        return lum, lc4_unet, cmpf

    @classmethod
    def from_config(cls, config: LC4Config | None = None, seed: int | None = None) -> "LC4Model":
        """Random weights from a config (the VAE-initialised E^lum still copies the random E)."""
        from .tokenizer import load_clip_tokenizer

        config = copy.deepcopy(config or LC4Config.tiny())
        config.validate()
        # a seed here leaves the caller's global RNG untouched; without one, the global RNG is used
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            vae = AutoencoderKL(**config.vae)
            unet = UNet2DConditionModel(**config.unet)
            if config.text_pretrained is None:
                text_encoder, tokenizer = CLIPTextModel(CLIPTextConfig(**config.text)), None
            else:
                text_encoder, tokenizer = _referenced_text(config)
            lum, lc4_unet, cmpf = cls._new_parts(config, vae, unet, config.text["hidden_size"])
        tokenizer = tokenizer or load_clip_tokenizer(config.tokenizer)
        return cls(config, vae, lum, lc4_unet, text_encoder, tokenizer, cmpf)

    @classmethod
    def from_sd15(cls, name_or_path: str | os.PathLike, config: LC4Config | None = None,
                  torch_dtype: torch.dtype | None = None) -> "LC4Model":
        """New L-C4 around a diffusers SD1.5 folder (or hub id); new parts zero-initialised."""
        from .tokenizer import load_clip_tokenizer

        root = _resolve_folder(name_or_path, "SD1.5 model",
                               allow_patterns=[f"{s}/*" for s in SD15_SUBFOLDERS] + [MODEL_INDEX])
        missing = [s for s in SD15_SUBFOLDERS if not (root / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root} is not a diffusers SD1.5 folder: missing {', '.join(missing)}/")
        kw = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        vae = AutoencoderKL.from_pretrained(root, subfolder="vae", **kw)
        unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", **kw)
        text_encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", **kw)
        tokenizer = load_clip_tokenizer(root / "tokenizer")
        scheduler = read_config_mapping(root / "scheduler" / "scheduler_config.json", "scheduler config")
        return cls._assemble(config, vae, unet, text_encoder, tokenizer, scheduler)

    @classmethod
    def from_single_file(cls, path: str | os.PathLike, config: LC4Config | None = None, *,
                         tokenizer: str | None = None, trust_pickle: bool = False,
                         **component_configs: dict) -> "LC4Model":
        """New L-C4 around an original-layout SD1.5 checkpoint (`.safetensors`, `.ckpt`), offline.

        `unet_config` / `vae_config` / `text_config` override the SD1.5 shapes (other SD1.5-topology
        models); `tokenizer` is a CLIP tokenizer folder (default: the CLIP BPE shipped with open_clip).
        """
        from .single_file import load_sd15_single_file
        from .tokenizer import load_clip_tokenizer

        parts = load_sd15_single_file(path, trust_pickle=trust_pickle, **component_configs)
        tok = load_clip_tokenizer(tokenizer)
        return cls._assemble(config, parts.vae, parts.unet, parts.text_encoder, tok, dict(parts.scheduler_config))

    @classmethod
    def _assemble(cls, config, vae, unet, text_encoder, tokenizer, scheduler: dict) -> "LC4Model":
        """Wrap loaded SD1.5 parts; the config's module choices apply, its sizes come from the parts."""
        config = copy.deepcopy(config or LC4Config.sd15())
        config.vae, config.unet = dict(vae.config), dict(unet.config)
        config.text = {k: v for k, v in text_encoder.config.to_dict().items() if k in LC4Config().text}
        config.text_pretrained = None  # SD1.5's own CLIP, stored with the model
        config.scheduler = {k: v for k, v in scheduler.items() if not k.startswith("_")}
        config.validate()
        lum, lc4_unet, cmpf = cls._new_parts(config, vae, unet, text_encoder.config.hidden_size)
        if cmpf is not None:
            cmpf.to(dtype=unet.dtype)
        return cls(config, vae, lum, lc4_unet, text_encoder, tokenizer, cmpf)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "LC4Model":
        """Load a folder written by `save_pretrained` (or its hub id).

        The folder is checked before any weights are read (`check_model_folder`): every JSON file
        parses, every config value is sane and every part has its weight file; a part whose weights
        do not match its config (missing, unexpected or mis-shaped tensors) is an error too, never a
        silently random layer. Each problem is one `ValueError` / `FileNotFoundError` line naming
        the file and field.
        """
        from .tokenizer import load_clip_tokenizer

        if torch_dtype is not None and not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"torch_dtype must be a torch.dtype such as torch.float16; got {torch_dtype!r}")
        root = _resolve_folder(name_or_path, "L-C4 model")
        config = check_model_folder(root)
        kw = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        vae = _load_part(AutoencoderKL, root, "vae", kw)
        lum = _load_part(LuminanceEncoder, root, "lum_encoder", kw)
        unet = _load_part(LC4UNet, root, "unet", kw)
        if config.text_pretrained is not None:
            text_encoder, tokenizer = _referenced_text(config)
            if torch_dtype is not None:
                text_encoder.to(torch_dtype)
        else:
            # like the diffusers parts, fp32 unless asked (transformers 5 would keep a half-precision file's dtype)
            text_encoder = _load_part(CLIPTextModel, root, "text_encoder", kw or {"torch_dtype": torch.float32})
            tokenizer = load_clip_tokenizer(root / "tokenizer")
        cmpf = _load_part(CrossModalityPreFusion, root, "cmpf", kw) if (root / "cmpf").is_dir() else None
        return cls(config, vae, lum, unet, text_encoder, tokenizer, cmpf)

    def save_pretrained(self, path: str | os.PathLike, text_encoder_dtype: torch.dtype | None = None,
                        storage_dtype: torch.dtype | None = None) -> Path:
        """Write every part (safetensors + config) into `path`, atomically (temp folder, then rename).

        `text_encoder_dtype` stores the (frozen) text encoder in another precision, e.g. float16 to
        halve a small model's download; `storage_dtype` does so for every part. The model in memory
        is unchanged, and `from_pretrained` loads the parts back in float32 unless asked otherwise.
        """
        import shutil
        import tempfile

        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            _stored(self.vae, storage_dtype).save_pretrained(tmp / "vae")
            _stored(self.lum_encoder, storage_dtype).save_pretrained(tmp / "lum_encoder")
            _stored(self.unet, storage_dtype).save_pretrained(tmp / "unet")
            if self.cmpf is not None:
                _stored(self.cmpf, storage_dtype).save_pretrained(tmp / "cmpf")
            parts = ["vae", "lum_encoder", "unet", "cmpf", "scheduler"]
            if self.config.text_pretrained is None:  # a referenced encoder stays where it is
                text_encoder = _stored(self.text_encoder, text_encoder_dtype or storage_dtype)
                text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / "tokenizer")
                parts[4:4] = ["text_encoder", "tokenizer"]
            (tmp / "scheduler").mkdir()
            sched = {"_class_name": "DDIMScheduler", **self.config.scheduler}
            (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
            index = {"_class_name": "LC4Model", "_lc4_version": _version(), "parts": parts}
            (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2))
            if final.exists():
                backup = final.with_name(f".{final.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                final.rename(backup)
                tmp.rename(final)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    # --------------------------------------------------------------- operations
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def set_latent_scale(self, scale: float) -> None:
        """Set the VAE's latent `scaling_factor` (its config and this model's), e.g. after calibration."""
        self.vae.register_to_config(scaling_factor=float(scale))
        self.config.vae["scaling_factor"] = float(scale)

    def encode_prompt(self, prompts: Sequence[str]) -> TextConditioning:
        """CLIP embeddings y_0 and colour-word masks for `prompts` (+ their colour phrases alone when
        the UNet takes its cross-attention values from them)."""
        return encode_prompts(self.text_encoder, self.tokenizer, prompts, phrases=self.unet.config.phrase_values)

    def encode_luminance(self, grey: torch.Tensor) -> LuminanceFeatures:
        """E^lum features of `(b f) 3 h w` grey frames in [-1, 1]."""
        return self.lum_encoder(grey.to(self.lum_encoder.dtype))

    def encode_frames(self, rgb: torch.Tensor, generator: torch.Generator | None = None,
                      sample: bool = True) -> torch.Tensor:
        """Scaled VAE latents of `(b f) 3 h w` colour frames in [-1, 1]."""
        dist = self.vae.encode(rgb.to(self.vae.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return z * self.vae.config.scaling_factor

    def fuse_text(self, text: TextConditioning, lum: LuminanceFeatures, num_frames: int,
                  use_cmpf: bool = True) -> torch.Tensor:
        """y^tex per clip (b, 77, d): CMPF over the clip's luminance, or plain CLIP without CMPF.

        With a UNet that takes phrase values (`lc4.models.phrases`), (b, 2·77, d): the keys' states,
        then the values' (each colour phrase encoded alone, through the same CMPF).
        """
        use_cmpf = use_cmpf and self.cmpf is not None
        if use_cmpf:
            visual = self.cmpf.visual_prompt(lum.latent_features.to(self.cmpf.dtype), num_frames)

        def fuse(emb: torch.Tensor, mask: torch.Tensor, owner: torch.Tensor | None = None) -> torch.Tensor:
            """CMPF of text states over their clip's visual prompt (`owner`: each row's clip)."""
            if not use_cmpf:
                return emb
            return self.cmpf(emb.to(self.cmpf.dtype), visual if owner is None else visual[owner], mask)

        keys = fuse(text.embeddings, text.color_mask)
        if not self.unet.config.phrase_values:
            return keys
        phrases = text.phrases
        if phrases is None:
            raise ValueError("this UNet takes phrase values: encode the prompts with LC4Model.encode_prompt")
        fused = keys[:0]
        if phrases.owner.numel():
            fused = fuse(phrases.embeddings, phrases.color_mask, phrases.owner.to(keys.device))
        return torch.cat([keys, phrase_values(keys, phrases, fused)], dim=1)

    def predict_noise(self, noisy: torch.Tensor, timestep: torch.Tensor, text_embeddings: torch.Tensor,
                      lum: LuminanceFeatures, num_frames: int) -> torch.Tensor:
        """ε̂ for `(b f) c h w` latents; `text_embeddings` is per clip (b, 77, d)."""
        cond = text_embeddings.repeat_interleave(num_frames, dim=0).to(self.unet.dtype)
        return self.unet(noisy.to(self.unet.dtype), timestep, cond, num_frames=num_frames,
                         lum_moments=self.unet_lum_input(lum))

    def unet_lum_input(self, lum: LuminanceFeatures) -> torch.Tensor:
        """What the UNet reads of E^lum: the moments, then the latent-level features if it takes them."""
        if not self.unet.config.lum_feature_channels:
            return lum.moments
        return torch.cat([lum.moments, lum.latent_features.to(lum.moments.dtype)], dim=1)

    def decode(self, latents: torch.Tensor, lum: LuminanceFeatures, chunk_size: int | None = None) -> torch.Tensor:
        """RGB in [-1, 1] from scaled latents, with E^lum's skips added at every decoder scale."""
        chunk_size = chunk_size or latents.shape[0]
        out = []
        for start in range(0, latents.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            z = latents[sl].to(self.vae.dtype) / self.vae.config.scaling_factor
            with inject_decoder_skips(self.vae.decoder, lum.select(sl).skips):
                out.append(self.vae.decode(z).sample)
        return torch.cat(out)

    def noise_scheduler(self, name: str = "DDPMScheduler"):
        """A diffusers scheduler of class `name` with this model's training noise schedule."""
        import diffusers

        cls = getattr(diffusers, name, None)
        if cls is None or not name.endswith("Scheduler"):
            raise ValueError(f"unknown scheduler {name!r}: use a diffusers scheduler class name such as DDIMScheduler")
        return cls.from_config(self.config.scheduler)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, the new L-C4 parts separately (for logs and docs)."""
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
        return {
            "vae": count(self.vae),
            "lum_encoder": count(self.lum_encoder.encoder),
            "decoder_skips": count(self.lum_encoder.skip_convs),
            "unet_sd15": count(self.unet.unet),
            "temporal_layers": count(self.unet.temporal_layers),
            "lum_injection": count(self.unet.lum_injection),
            "text_encoder": count(self.text_encoder),
            "cmpf": count(self.cmpf),
        }


# weight files a part folder may hold, in the order the libraries look for them (diffusers / transformers)
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                     "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json")
# part folder → (weight file names, validator of its config.json)
PART_CHECKS = {
    "vae": (DIFFUSERS_WEIGHTS, check_vae_config),
    "lum_encoder": (DIFFUSERS_WEIGHTS, check_luminance_config),
    "unet": (DIFFUSERS_WEIGHTS, check_lc4_unet_config),
    "cmpf": (DIFFUSERS_WEIGHTS, check_cmpf_config),
    "text_encoder": (TRANSFORMERS_WEIGHTS, check_text_config),
}


def check_model_folder(root: str | os.PathLike) -> LC4Config:
    """Check a saved L-C4 folder without reading any weights; returns its `LC4Config`.

    Every ``*.json`` file of the folder and its part folders must parse (the error names the
    file), `lc4_config.json` and each part's `config.json` must hold sane values (the error names
    the file and field), and each part the model needs must have its config and weight file.
    """
    root = Path(root)
    index = root / MODEL_INDEX
    if not index.is_file():
        raise ValueError(f"{root} is not an L-C4 model folder (no {MODEL_INDEX} naming LC4Model)")
    if read_config_mapping(index, "model index").get("_class_name") not in ("LC4Model", "LC4Pipeline"):
        raise ValueError(f"{root} is not an L-C4 model folder (no {MODEL_INDEX} naming LC4Model)")
    for path in sorted([*root.glob("*.json"), *root.glob("*/*.json")]):
        if path.is_file() and not path.name.startswith("."):
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
    config = LC4Config.from_file(root / CONFIG_NAME)
    needed = ["vae", "lum_encoder", "unet"]
    if config.text_pretrained is None:
        needed += ["text_encoder", "tokenizer"]
    if config.cmpf.enabled or (root / "cmpf").is_dir():
        needed.append("cmpf")
    for part in needed:
        folder = root / part
        if not folder.is_dir():
            why = " (lc4_config.json has cmpf.enabled: true)" if part == "cmpf" else ""
            raise FileNotFoundError(f"{root}: the model folder is incomplete: {part}/ is missing{why}")
        if part not in PART_CHECKS:
            continue
        names, check = PART_CHECKS[part]
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{part} config not found: {cfg_path}")
        try:
            check(read_config_mapping(cfg_path, f"{part} config"), part)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if str(cfg_path) in message else f"{cfg_path}: {message}") from None
        if not any((folder / name).is_file() for name in names):
            raise FileNotFoundError(f"{part} weights not found: {folder / names[0]} is missing "
                                    f"(the model folder is incomplete)")
    sched = root / "scheduler" / "scheduler_config.json"
    if sched.is_file():
        try:
            check_scheduler_config(read_config_mapping(sched, "scheduler config"), "scheduler")
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if str(sched) in message else f"{sched}: {message}") from None
    return config


def _weight_file(folder: Path) -> Path:
    for name in (*DIFFUSERS_WEIGHTS, *TRANSFORMERS_WEIGHTS):
        if (folder / name).is_file():
            return folder / name
    return folder


def _load_part(kind: Any, root: Path, part: str, kw: dict) -> Any:
    """`kind.from_pretrained(root, subfolder=part)`, with every failure one line naming the weight file
    and the weights checked against the config (a missing tensor would stay on the meta device)."""
    from diffusers.utils import logging as diffusers_logging

    weights = _weight_file(root / part)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its "newly initialized" warning becomes our error below
    try:
        model, info = kind.from_pretrained(root, subfolder=part, output_loading_info=True, **kw)
    except FileNotFoundError:
        raise
    except Exception as exc:  # corrupt file, size mismatch, ...: name the file, keep it to one line
        detail = " ".join(str(exc).split())
        if str(weights) in detail or not detail:  # the library's message only repeats the path
            detail = "the file is damaged or not a weight file"
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ValueError(f"cannot load {part} weights from {weights}: {detail} ({type(exc).__name__})") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    problems = []
    for key, what in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"),
                      ("mismatched_keys", "mis-shaped")):
        keys = [k if isinstance(k, str) else k[0] for k in (info.get(key) or [])]
        if key == "unexpected_keys" and part == "text_encoder":
            continue  # transformers tolerates its own legacy buffers
        if keys:
            problems.append(f"{len(keys)} {what} ({', '.join(sorted(keys)[:3])}{', ...' if len(keys) > 3 else ''})")
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta and not problems:
        problems.append(f"{len(meta)} missing ({', '.join(meta[:3])}{', ...' if len(meta) > 3 else ''})")
    if problems:
        raise ValueError(f"{weights} does not match {root / part / 'config.json'}: "
                         f"{'; '.join(problems)} weight tensors")
    return model


def _referenced_text(config: LC4Config):
    """Load `config.text_pretrained`; its width becomes `config.text["hidden_size"]` (checked against the UNet)."""
    from .text_reference import load_text_reference, text_width

    encoder, tokenizer = load_text_reference(config.text_pretrained)
    config.text["hidden_size"] = text_width(encoder)
    config.validate()
    return encoder, tokenizer


def _stored(module: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    """`module` as it is written to disk: itself, or a copy cast to `dtype`."""
    if dtype is None or dtype == module.dtype:
        return module
    return copy.deepcopy(module).to(dtype)


def _version() -> str:
    from .. import __version__

    return __version__


__all__ = ["LC4Model", "check_model_folder"]
