"""Load a Stable Diffusion 1.5 single-file checkpoint (original LDM/CompVis layout) offline.

diffusers' own `from_single_file` fetches the component configs from the Hugging Face hub. Here
the SD1.5 configs ship in the package (`lc4.models.sd15`), so a `.safetensors` / `.ckpt` file
is turned into diffusers/transformers modules with no network access: the file is read, checked
to be an SD1.5 text-to-image checkpoint (clear one-line errors for SD2.x, SDXL, inpainting,
VAE-only or LoRA files), converted with diffusers' LDM key converters and loaded with
`strict=True`, so any remaining mismatch is an error instead of a silently random layer.

Pickle policy: `.ckpt`/`.pt`/`.pth`/`.bin` files are read with `torch.load(weights_only=True)`.
A file that needs full unpickling (it stores Python objects such as training callbacks) is
refused with `UntrustedCheckpointError` unless the caller passes `trust_pickle=True`, because
unpickling can run arbitrary code.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lc4.models.ldm_export import LDM_TEXT_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX
from lc4.models.sd15 import config as sd15_config

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
POSITION_IDS_KEY = "embeddings.position_ids"
TRUST_HINT = "pass --trust-checkpoint (Python: trust_pickle=True) only if you trust where the file came from"


class UntrustedCheckpointError(ValueError):
    """A pickle checkpoint needs full unpickling (it can run code) and trust was not given."""


@dataclass
class SD15Components:
    """The pretrained SD1.5 parts L-C4 is built around, loaded from one checkpoint file."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    scheduler_config: dict[str, Any] = field(default_factory=lambda: sd15_config("sd15_scheduler"))


# --------------------------------------------------------------------------- reading


def _check_path(path: Path) -> str:
    """Validate the path and return its lower-case suffix."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder; this loader reads one single-file checkpoint "
            f"(a diffusers model folder loads with from_pretrained)"
        )
    suffix = path.suffix.lower()
    if suffix not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        known = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
        raise ValueError(
            f"unsupported checkpoint extension {suffix or '(none)'!r} for {path.name}; expected one of {known}"
        )
    return suffix


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise ValueError(f"{path.name} is not a readable safetensors file: {err}") from err


def _unpickling_detail(message: str) -> str:
    """The useful line of torch's weights-only refusal (e.g. which global was refused), not its
    generic preamble ("Weights only load failed. In PyTorch 2.6, ...")."""
    _, marker, tail = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (tail if marker else message).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    for line in specific or lines:
        return line.split(". Please use")[0]
    return "unknown reason"


def _needs_full_unpickling(detail: str, path: Path | None = None) -> bool:
    """Whether a weights-only refusal is about what the pickle holds (Python objects, or pickle
    instructions only a full unpickler runs), not a damaged file."""
    if "GLOBAL" in detail or "allowlisted" in detail or "add_safe_globals" in detail:
        return True
    return path is not None and _is_well_formed_pickle(path)


def _is_well_formed_pickle(path: Path) -> bool:
    """Whether the checkpoint's pickle parses to its end, read with `pickletools` (which only
    decodes the instructions and never runs them): then the weights-only refusal was about its
    content, and full unpickling (--trust-checkpoint) could read it; else the file is damaged."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return False
                data = archive.read(name)
        else:
            data = path.read_bytes()[: 64 * 1024**2]
        for _ in pickletools.genops(data):
            pass
        return True
    except Exception:  # noqa: BLE001 - anything that does not parse is "damaged"
        return False


def _read_pickle(path: Path, *, trust_pickle: bool) -> Any:
    # No mmap: the loaded tensors become the model parameters (see `_load_part`), and those
    # must not stay backed by a file that could change on disk.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(str(err))
        if not trust_pickle:
            if _needs_full_unpickling(detail, path):
                raise UntrustedCheckpointError(
                    f"{path.name} contains Python objects beyond tensors and needs full unpickling, "
                    f"which can run arbitrary code ({detail}); prefer a .safetensors file, or {TRUST_HINT}"
                ) from None
            raise ValueError(f"{path.name} is not a readable PyTorch checkpoint (weights-only load: {detail})") from None
    except (RuntimeError, EOFError, KeyError, OSError) as err:
        raise ValueError(f"{path.name} is not a readable PyTorch checkpoint: {type(err).__name__}: {err}") from err
    logger.warning("fully unpickling trusted checkpoint %s", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as err:
        raise ValueError(
            f"{path.name} refers to Python code that is not installed here ({err}); "
            f"re-save its state_dict as .safetensors where that code exists"
        ) from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, OSError) as err:
        raise ValueError(f"{path.name} is not a readable PyTorch checkpoint: {type(err).__name__}: {err}") from err


def _unwrap_state_dict(obj: Any, name: str) -> dict[str, Tensor]:
    """Descend through top-level `state_dict` keys and keep the tensor entries."""
    for _ in range(4):
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name} holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v.detach() for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{name} contains no tensors")
    return tensors


def read_checkpoint(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> dict[str, Tensor]:
    """The flat `{key: tensor}` state dict stored in a single-file checkpoint (on the CPU)."""
    path = Path(path)
    suffix = _check_path(path)
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    return _unwrap_state_dict(_read_pickle(path, trust_pickle=trust_pickle), path.name)


# --------------------------------------------------------------------------- detection

_NEED = "L-C4 needs a Stable Diffusion 1.5 checkpoint (UNet, VAE and CLIP text encoder in one file)"
_IN_CHANNEL_NAMES = {9: "an inpainting UNet", 8: "an instruct-pix2pix UNet", 5: "a depth-conditioned UNet"}
_CONTEXT_NAMES = {1024: "Stable Diffusion 2.x", 2048: "SDXL"}


def _describe_without_unet(keys: list[str]) -> str:
    """What a file with no `model.diffusion_model.*` keys most likely is."""
    lowered = [k.lower() for k in keys]
    if any("lora" in k or k.endswith((".alpha", ".hada_w1_a", ".lokr_w1")) for k in lowered):
        return "looks like a LoRA/adapter file, not a full model"
    if any(k.startswith("control_model.") for k in keys):
        return "looks like a ControlNet, not a full model"
    if any(k.startswith((LDM_VAE_PREFIX, "encoder.down.", "decoder.up.")) for k in keys):
        return "looks like a standalone VAE (no UNet weights)"
    diffusers_heads = ("down_blocks.", "up_blocks.", "mid_block.", "text_model.", "encoder.down_blocks.")
    if any(k.startswith(diffusers_heads) for k in keys):
        return "looks like one diffusers-format component (diffusers key names), not an LDM single file"
    if any(k.startswith(("double_blocks.", "joint_blocks.", "transformer_blocks.")) for k in keys):
        return "looks like a transformer-based diffusion model (SD3/Flux family)"
    return "contains no UNet weights (no model.diffusion_model.* keys)"


def check_sd15_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    unet_config: Mapping[str, Any] | None = None,
    name: str = "checkpoint",
) -> None:
    """Raise a one-line ValueError if the LDM state dict is not an SD1.5 text-to-image model.

    `unet_config` is the diffusers UNet config the file should match (SD1.5 by default); its
    `cross_attention_dim` and `in_channels` tell SD2.x/SDXL and inpainting files apart.
    """
    unet_config = unet_config if unet_config is not None else sd15_config("sd15_unet")
    keys = list(state_dict)

    def fail(what: str) -> None:
        raise ValueError(f"{name} {what}; {_NEED}")

    if any(k.startswith("conditioner.embedders.") for k in keys):
        fail("looks like an SDXL checkpoint (conditioner.embedders.* text encoders)")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        fail("looks like a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder, cond_stage_model.model.*)")
    if not any(k.startswith(LDM_UNET_PREFIX) for k in keys):
        fail(_describe_without_unet(keys))
    conv_in = state_dict.get(LDM_UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None:
        fail("has a diffusion model that is not an SD1.x UNet (no model.diffusion_model.input_blocks.0.0.weight)")

    expected_context = int(unet_config["cross_attention_dim"])
    for key in keys:
        if key.startswith(LDM_UNET_PREFIX) and key.endswith("attn2.to_k.weight"):
            context = int(state_dict[key].shape[-1])
            if context != expected_context:
                guess = _CONTEXT_NAMES.get(context)
                what = f"looks like {guess}" if guess else "does not match the SD1.5 UNet"
                fail(f"{what} (cross-attention dim {context}, SD1.5 config has {expected_context})")
            break

    in_channels, expected_in = int(conv_in.shape[1]), int(unet_config["in_channels"])
    if in_channels != expected_in:
        guess = _IN_CHANNEL_NAMES.get(in_channels, "a UNet with a different input")
        fail(f"looks like {guess} ({in_channels} input channels, the text-to-image UNet has {expected_in})")

    if not any(k.startswith(LDM_TEXT_PREFIX) for k in keys):
        fail("has no CLIP text encoder weights (cond_stage_model.transformer.*)")
    if not any(k.startswith(LDM_VAE_PREFIX) for k in keys):
        fail("has no VAE weights (first_stage_model.*)")


# --------------------------------------------------------------------------- conversion


def _check_converted(part: str, converted: Mapping[str, Any], model: nn.Module, name: str) -> None:
    """One-line ValueError for missing, extra or mis-shaped weights before the strict load."""
    expected = model.state_dict()
    absent = sorted(k for k, v in converted.items() if v is None)
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    shapes = sorted(
        k for k in set(expected) & set(converted)
        if converted[k] is not None and tuple(converted[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if absent or missing:
        first = (absent + missing)[0]
        problems.append(f"{len(absent) + len(missing)} missing weights (first: {first})")
    if extra:
        problems.append(f"{len(extra)} unexpected weights (first: {extra[0]})")
    if shapes:
        k = shapes[0]
        problems.append(
            f"{len(shapes)} shape mismatches (first: {k} is {tuple(converted[k].shape)}, "
            f"the config needs {tuple(expected[k].shape)})"
        )
    if problems:
        raise ValueError(f"{name}: the {part} weights do not match the configuration: {'; '.join(problems)}")


def _build(factory: Any) -> nn.Module:
    """Build a model without allocating or randomly initialising weights where that is safe.

    A model whose state is all persistent is built on the meta device; the strict
    `assign=True` load then gives every tensor its real value. A model with non-persistent
    buffers (CLIP's position ids) is built normally, since no load would fill those.
    """
    with torch.device("meta"):
        model = factory()
    persistent = set(model.state_dict())
    if all(name in persistent for name, _ in model.named_buffers()):
        return model
    return factory()


def _load_part(part: str, model: nn.Module, weights: dict[str, Any], name: str) -> nn.Module:
    """Strictly load converted weights into `model`, adopting the tensors instead of copying.

    `assign=True` makes the checkpoint tensors (cast to the model's dtype) the parameters, so
    loading the full SD1.5 needs about one copy of the weights in memory, not two. `weights`
    is emptied.
    """
    _check_converted(part, weights, model, name)
    expected = model.state_dict()
    ready = {}
    for key in list(weights):
        value = weights.pop(key)
        dtype = expected[key].dtype if value.is_floating_point() else value.dtype
        ready[key] = value.to(dtype=dtype).contiguous()
    model.load_state_dict(ready, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{part} still has unloaded tensors after a strict load: {left[:3]}")
    return model.eval()


def _has_ema(state_dict: Mapping[str, Tensor]) -> bool:
    return sum(k.startswith("model_ema.") for k in state_dict) > 100


def load_sd15_single_file(
    path: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
    unet_config: Mapping[str, Any] | None = None,
    vae_config: Mapping[str, Any] | None = None,
    text_config: Mapping[str, Any] | None = None,
    extract_ema: bool = True,
) -> SD15Components:
    """Load UNet, VAE and CLIP text encoder from an SD1.5 single-file checkpoint, offline.

    `*_config` default to the SD1.5 configs in `lc4.models.sd15` (pass the tiny ones for tests).
    `extract_ema`: when the file holds both EMA (`model_ema.*`) and training weights, use the
    EMA ones (what SD1.5 inference and the diffusers SD1.5 release use); files with only one
    set (e.g. `*-emaonly`) load that set either way.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    path = Path(path)
    unet_cfg = dict(unet_config) if unet_config is not None else sd15_config("sd15_unet")
    vae_cfg = dict(vae_config) if vae_config is not None else sd15_config("sd15_vae")
    text_cfg = dict(text_config) if text_config is not None else sd15_config("sd15_text")

    checkpoint = read_checkpoint(path, trust_pickle=trust_pickle)
    check_sd15_state_dict(checkpoint, unet_config=unet_cfg, name=path.name)

    use_ema = extract_ema and _has_ema(checkpoint)
    unet_weights = convert_ldm_unet_checkpoint(checkpoint, unet_cfg, extract_ema=use_ema)
    for key in [k for k in checkpoint if k.startswith((LDM_UNET_PREFIX, "model_ema."))]:
        del checkpoint[key]  # free the source tensors as soon as they are converted
    unet = _load_part("UNet", _build(lambda: UNet2DConditionModel.from_config(unet_cfg)), unet_weights, path.name)
    del unet_weights

    vae_weights = convert_ldm_vae_checkpoint(checkpoint, vae_cfg)
    vae = _load_part("VAE", _build(lambda: AutoencoderKL.from_config(vae_cfg)), vae_weights, path.name)
    del vae_weights

    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    text_weights = convert_ldm_clip_checkpoint(checkpoint)
    del checkpoint
    text_weights = {k: v for k, v in text_weights.items() if not k.endswith(POSITION_IDS_KEY)}
    if not any(k.startswith("text_model.") for k in text_encoder.state_dict()):
        # transformers 5 drops the `text_model.` level that LDM files (and transformers 4) have.
        text_weights = {k.removeprefix("text_model."): v for k, v in text_weights.items()}
    text_encoder = _load_part("CLIP text encoder", text_encoder, text_weights, path.name)

    logger.info("loaded SD1.5 single file %s (%s UNet weights)", path.name, "EMA" if use_ema else "plain")
    return SD15Components(unet, vae, text_encoder, scheduler_config=sd15_config("sd15_scheduler"))
