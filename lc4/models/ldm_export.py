"""Export diffusers SD1.5-family models to the original LDM/CompVis single-file key layout.

The original Stable Diffusion checkpoints (`v1-5-pruned-emaonly.safetensors`, `.ckpt`) store
the UNet under `model.diffusion_model.`, the VAE under `first_stage_model.` and the CLIP text
encoder under `cond_stage_model.transformer.`, each with its own module names. This module
maps the diffusers names to those names, so models trained here can be shared in the layout
that most SD tools read, and so that tests can make LDM-layout files from random weights.

The mapping is derived from the model *configuration* (number of blocks, layers per block,
which up blocks carry attention), so it works for any model of the SD1.x topology family, the
full SD1.5 shapes and scaled-down test twins alike. A diffusers key with no LDM counterpart
(a class embedding, an SDXL add-embedding, ...) is an error rather than silently dropped.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_TEXT_PREFIX = "cond_stage_model.transformer."

# diffusers ResnetBlock2D sub-module -> LDM ResBlock sub-module (UNet).
_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}

# Top-level UNet modules whose names differ only as a whole.
_UNET_SIMPLE_NAMES = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}

# diffusers VAE Attention sub-module -> LDM AttnBlock sub-module.
_VAE_ATTENTION_NAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}

_UNET_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)")
_UNET_SAMPLER = re.compile(r"(down|up)_blocks\.(\d+)\.(downsamplers|upsamplers)\.0\.conv\.(weight|bias)")
_UNET_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_VAE_BLOCK = re.compile(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)")
_VAE_SAMPLER = re.compile(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(downsamplers|upsamplers)\.0\.conv\.(.+)")
_VAE_MID_RESNET = re.compile(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)")
_VAE_MID_ATTENTION = re.compile(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)")


def _rename_head(rest: str, table: Mapping[str, str], key: str) -> str:
    """Rename the leading module of `rest` (e.g. `norm1.weight`) through `table`."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    raise ValueError(f"no LDM name for diffusers key {key!r} (unknown sub-module in {rest!r})")


def unet_key_to_ldm(key: str, *, layers_per_block: int, up_has_attention: Sequence[bool]) -> str:
    """The LDM name (without `model.diffusion_model.`) of one diffusers UNet parameter.

    LDM numbers the encoder as one flat list `input_blocks` (entry 0 is `conv_in`; each down
    block contributes `layers_per_block` (resnet, attention) entries and, unless it is the last,
    one downsampler entry), the decoder as `output_blocks` (each up block contributes
    `layers_per_block + 1` entries, the last of which also holds the upsampler), and the middle
    as `middle_block.0/1/2` (resnet, attention, resnet).
    """
    module, _, param = key.rpartition(".")
    if module in _UNET_SIMPLE_NAMES:
        return f"{_UNET_SIMPLE_NAMES[module]}.{param}"
    stride = layers_per_block + 1

    if m := _UNET_BLOCK.fullmatch(key):
        side, block, kind, layer, rest = m[1], int(m[2]), m[3], int(m[4]), m[5]
        limit = layers_per_block if side == "down" else layers_per_block + 1
        if layer >= limit:
            raise ValueError(
                f"diffusers key {key!r} has layer {layer}; layers_per_block={layers_per_block} allows < {limit}"
            )
        index = 1 + block * stride + layer if side == "down" else block * stride + layer
        outer = "input_blocks" if side == "down" else "output_blocks"
        if kind == "resnets":
            return f"{outer}.{index}.0.{_rename_head(rest, _UNET_RESNET_NAMES, key)}"
        return f"{outer}.{index}.1.{rest}"

    if m := _UNET_SAMPLER.fullmatch(key):
        side, block, param = m[1], int(m[2]), m[4]
        if side == "down":
            return f"input_blocks.{1 + block * stride + layers_per_block}.0.op.{param}"
        if block >= len(up_has_attention):
            raise ValueError(f"diffusers key {key!r} names up block {block}; the model has {len(up_has_attention)}")
        slot = 2 if up_has_attention[block] else 1
        return f"output_blocks.{block * stride + layers_per_block}.{slot}.conv.{param}"

    if m := _UNET_MID.fullmatch(key):
        kind, index, rest = m[1], int(m[2]), m[3]
        if kind == "resnets" and index in (0, 1):
            return f"middle_block.{2 * index}.{_rename_head(rest, _UNET_RESNET_NAMES, key)}"
        if kind == "attentions" and index == 0:
            return f"middle_block.1.{rest}"

    raise ValueError(f"no LDM name for diffusers UNet key {key!r}: not an SD1.x-family UNet")


def _vae_resnet_tail(tail: str) -> str:
    """VAE resnets share diffusers' names except the 1×1 shortcut (`nin_shortcut` in LDM)."""
    return "nin_shortcut" + tail[len("conv_shortcut"):] if tail.startswith("conv_shortcut.") else tail


def vae_key_to_ldm(key: str, *, num_up_blocks: int) -> str:
    """The LDM name (without `first_stage_model.`) of one diffusers AutoencoderKL parameter.

    LDM numbers decoder levels by resolution (`up.0` is the full-resolution level, applied last)
    while diffusers numbers them in execution order, so decoder block `i` is LDM `up.{n-1-i}`.
    """
    side_renames = {"conv_norm_out": "norm_out", "conv_in": "conv_in", "conv_out": "conv_out"}
    head, _, rest = key.partition(".")
    if head in ("quant_conv", "post_quant_conv"):
        return key
    if head in ("encoder", "decoder"):
        module, _, param = rest.partition(".")
        if module in side_renames and param in ("weight", "bias"):
            return f"{head}.{side_renames[module]}.{param}"

    if m := _VAE_BLOCK.fullmatch(key):
        side, direction, block, layer, tail = m[1], m[2], int(m[3]), int(m[4]), m[5]
        level = block if direction == "down" else num_up_blocks - 1 - block
        return f"{side}.{direction}.{level}.block.{layer}.{_vae_resnet_tail(tail)}"

    if m := _VAE_SAMPLER.fullmatch(key):
        side, direction, block, tail = m[1], m[2], int(m[3]), m[5]
        level = block if direction == "down" else num_up_blocks - 1 - block
        name = "downsample" if direction == "down" else "upsample"
        return f"{side}.{direction}.{level}.{name}.conv.{tail}"

    if m := _VAE_MID_RESNET.fullmatch(key):
        side, index, tail = m[1], int(m[2]), m[3]
        if index in (0, 1):
            return f"{side}.mid.block_{index + 1}.{_vae_resnet_tail(tail)}"

    if m := _VAE_MID_ATTENTION.fullmatch(key):
        side, module, param = m[1], m[2], m[3]
        if module in _VAE_ATTENTION_NAMES:
            return f"{side}.mid.attn_1.{_VAE_ATTENTION_NAMES[module]}.{param}"

    raise ValueError(f"no LDM name for diffusers VAE key {key!r}: not an SD1.x-family AutoencoderKL")


def text_key_to_ldm(key: str) -> str:
    """The LDM name (without `cond_stage_model.transformer.`) of one CLIPTextModel parameter.

    transformers 4.x names the parameters `text_model.*`; transformers 5.x drops that level.
    The LDM layout always has it.
    """
    return key if key.startswith("text_model.") else f"text_model.{key}"


def _config_value(model: nn.Module, name: str) -> object:
    config = getattr(model, "config", None)
    if isinstance(config, Mapping) and name in config:
        return config[name]
    if config is not None and hasattr(config, name):
        return getattr(config, name)
    raise ValueError(f"{type(model).__name__} has no config value {name!r}; expected a diffusers model")


def _unique_insert(out: dict[str, Tensor], key: str, value: Tensor, source: str) -> None:
    if key in out:
        raise ValueError(f"two parameters map to the LDM key {key!r} (second: {source!r})")
    out[key] = value


def unet_to_ldm(unet: nn.Module) -> dict[str, Tensor]:
    """The UNet's parameters under their full LDM names (`model.diffusion_model.*`)."""
    layers = _config_value(unet, "layers_per_block")
    if not isinstance(layers, int):
        raise ValueError(f"layers_per_block must be one int for the LDM layout, got {layers!r}")
    up_types = list(_config_value(unet, "up_block_types"))
    up_has_attention = ["CrossAttn" in name for name in up_types]
    out: dict[str, Tensor] = {}
    for key, value in unet.state_dict().items():
        name = unet_key_to_ldm(key, layers_per_block=layers, up_has_attention=up_has_attention)
        _unique_insert(out, LDM_UNET_PREFIX + name, value.detach(), key)
    return out


def vae_to_ldm(vae: nn.Module) -> dict[str, Tensor]:
    """The VAE's parameters under their full LDM names (`first_stage_model.*`).

    The mid-block attention projections are `nn.Linear` in diffusers and 1×1 convolutions in
    LDM, so their weights get two trailing unit dimensions.
    """
    num_up = len(list(_config_value(vae, "up_block_types")))
    out: dict[str, Tensor] = {}
    for key, value in vae.state_dict().items():
        name = vae_key_to_ldm(key, num_up_blocks=num_up)
        value = value.detach()
        if ".mid.attn_1." in name and name.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            value = value.reshape(*value.shape, 1, 1) if value.ndim == 2 else value
        _unique_insert(out, LDM_VAE_PREFIX + name, value, key)
    return out


def text_to_ldm(text_encoder: nn.Module) -> dict[str, Tensor]:
    """The CLIP text encoder's parameters under their full LDM names (`cond_stage_model.transformer.*`)."""
    out: dict[str, Tensor] = {}
    for key, value in text_encoder.state_dict().items():
        if key.endswith("embeddings.position_ids"):
            continue  # a constant buffer, not a weight; loaders drop it anyway
        _unique_insert(out, LDM_TEXT_PREFIX + text_key_to_ldm(key), value.detach(), key)
    return out


def to_ldm_state_dict(unet: nn.Module, vae: nn.Module, text_encoder: nn.Module) -> dict[str, Tensor]:
    """One LDM-layout state dict holding all three SD1.x components.

    The tensors share storage with the models' parameters (no copy, so exporting the full
    SD1.5 does not double memory); clone them before changing them in place.
    """
    return {**unet_to_ldm(unet), **vae_to_ldm(vae), **text_to_ldm(text_encoder)}


def save_sd15_single_file(
    path: str | os.PathLike[str],
    unet: nn.Module,
    vae: nn.Module,
    text_encoder: nn.Module,
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the three components as one LDM-layout `.safetensors` file and return its path.

    The file is written under a temporary name in the same folder and renamed when complete,
    so an interrupted export never leaves a truncated checkpoint behind. `dtype` casts floating
    point tensors (e.g. `torch.float16` for a half-size file).
    """
    from safetensors.torch import save_file

    target = Path(path)
    if target.suffix.lower() != ".safetensors":
        raise ValueError(f"single-file export writes .safetensors only, got {target.name!r}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {target.parent}")
    state = to_ldm_state_dict(unet, vae, text_encoder)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.contiguous() for k, v in state.items()}
    # A unique name beside the target (same filesystem, so the rename is atomic); created by
    # save_file itself so the file gets the usual umask permissions.
    temp_name = str(target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"))
    try:
        save_file(state, temp_name, metadata=dict(metadata) if metadata else None)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
