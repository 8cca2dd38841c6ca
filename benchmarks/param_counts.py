"""Parameter counts of every part of L-C4, the new parts broken down (issue 2).

The models are built on PyTorch's ``meta`` device: shapes only, no memory and no random
initialisation, so the full SD1.5-size model costs well under a second. ``--materialize``
builds them with real random weights instead (slow; the counts must agree).

    python benchmarks/param_counts.py                 # SD1.5 size, all temporal variants, + tiny
    python benchmarks/param_counts.py --json out.json # also write the numbers as JSON
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Iterable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from lc4.models.config import LC4Config  # noqa: E402
from lc4.models.lc4 import LC4Model  # noqa: E402
from lc4.models.tda import TEMPORAL_KINDS  # noqa: E402

VARIANTS = TEMPORAL_KINDS  # tda, temporal_attention, conv3d, none


def count(module: nn.Module | Iterable[nn.Module] | None) -> int:
    """Number of parameters (elements) of a module, a list of modules, or None (0)."""
    if module is None:
        return 0
    if isinstance(module, nn.Module):
        return sum(p.numel() for p in module.parameters())
    return sum(count(m) for m in module)


def build(preset: str, kind: str, materialize: bool = False) -> LC4Model:
    """The L-C4 model of `preset` (sd15 | tiny) with temporal module `kind`, on meta unless `materialize`."""
    config = getattr(LC4Config, preset)(temporal={"kind": kind})
    device = contextlib.nullcontext() if materialize else torch.device("meta")
    with device:
        return LC4Model.from_config(config)


def temporal_layer_parts(layer: nn.Module) -> dict[str, int]:
    """Sub-part counts of one temporal layer (names follow lc4/models/tda.py)."""
    parts: dict[str, int] = OrderedDict(norm=count(layer.norm))
    if hasattr(layer, "sampler"):  # TDA
        parts["W_o (offset projection)"] = count(layer.sampler.project)
        parts["delta_offset (3D conv net)"] = count(layer.sampler.offset_net)
    if hasattr(layer, "to_q"):  # TDA and fixed temporal attention
        parts["W_q, W_k, W_v"] = count([layer.to_q, layer.to_k, layer.to_v])
        parts["W_h (output, zero-init)"] = count(layer.to_out)
    if hasattr(layer, "conv"):  # 3D convolution
        parts["conv in/3x3x3"] = count(list(layer.conv)[:-1])
        parts["conv out (zero-init)"] = count(list(layer.conv)[-1])
    return parts


def layer_width(layer: nn.Module) -> int:
    """Channel width C of the transformer block a temporal layer sits in."""
    return int(layer.norm.normalized_shape[0])


def measure(model: LC4Model) -> dict:
    """All counts of one model as a JSON-ready mapping."""
    unet, lum, cmpf = model.unet, model.lum_encoder, model.cmpf
    parts = OrderedDict(
        vae=count(model.vae),
        text_encoder=count(model.text_encoder),
        unet_sd15=count(unet.unet),
        lum_encoder=count(lum.encoder),
        decoder_skips=count(lum.skip_convs),
        lum_injection=count(unet.lum_injection),
        temporal_layers=count(unet.temporal_layers),
        cmpf=count(cmpf),
    )
    widths = Counter(layer_width(layer) for layer in unet.temporal_layers)
    per_width = OrderedDict()
    for width in sorted(widths):
        layer = next(m for m in unet.temporal_layers if layer_width(m) == width)
        per_width[str(width)] = {
            "layers": widths[width],
            "params_per_layer": count(layer),
            "params_total": count(layer) * widths[width],
            "parts": temporal_layer_parts(layer),
        }
    cmpf_parts = OrderedDict()
    if cmpf is not None:
        cmpf_parts = OrderedDict(
            [
                ("lum_norm (GroupNorm)", count(cmpf.lum_norm)),
                ("visual-prompt sampler (W_o + delta_offset)", count(cmpf.compress)),
                ("visual_in (lum -> text width)", count(cmpf.visual_in)),
                *[(f"fusion block {i + 1}", count(b)) for i, b in enumerate(cmpf.blocks)],
                ("W_e (zero-init)", count(cmpf.out)),
            ]
        )
    new = parts["lum_encoder"] + parts["decoder_skips"] + parts["lum_injection"] + parts["temporal_layers"]
    new += parts["cmpf"]
    return {
        "parts": parts,
        "skip_convs": [count(c) for c in lum.skip_convs],
        "temporal_per_width": per_width,
        "cmpf_parts": cmpf_parts,
        "total": sum(parts.values()),
        "new_total": new,
        "sd15_total": parts["vae"] + parts["text_encoder"] + parts["unet_sd15"],
    }


def fmt(n: int) -> str:
    """Parameters as `12,345,678 (12.35 M)`."""
    return f"{n:,} ({n / 1e6:.2f} M)" if n >= 10_000 else f"{n:,}"


def render(preset: str, results: dict[str, dict]) -> str:
    """Markdown tables for one preset and all its temporal variants."""
    lines = [f"## {preset}", ""]
    base = results["tda"]
    lines += ["| part | params | new in L-C4 |", "|---|---:|:---:|"]
    labels = {
        "vae": ("VAE (E + D)", ""), "text_encoder": ("CLIP text encoder", ""),
        "unet_sd15": ("UNet (diffusers UNet2DConditionModel)", ""), "lum_encoder": ("E^lum (copy of E)", "yes"),
        "decoder_skips": ("decoder skip convs", "yes"), "lum_injection": ("lum -> latent injection conv", "yes"),
        "temporal_layers": ("TDA, all layers", "yes"), "cmpf": ("CMPF (incl. W_e)", "yes"),
    }
    for key, value in base["parts"].items():
        name, new = labels[key]
        lines.append(f"| {name} | {fmt(value)} | {new} |")
    lines.append(f"| **total** | {fmt(base['total'])} | new: {fmt(base['new_total'])} |")
    lines.append("")
    lines.append(f"Decoder skip convs per decoder scale: {', '.join(f'{n:,}' for n in base['skip_convs'])}.")
    lines.append("")
    lines += ["| temporal module | layers | all layers | share of the base UNet |", "|---|---:|---:|---:|"]
    for kind, res in results.items():
        n_layers = sum(v["layers"] for v in res["temporal_per_width"].values())
        share = res["parts"]["temporal_layers"] / res["parts"]["unet_sd15"]
        lines.append(f"| {kind} | {n_layers} | {fmt(res['parts']['temporal_layers'])} | {100 * share:.2f} % |")
    lines.append("")
    for kind, res in results.items():
        if not res["temporal_per_width"]:
            continue
        lines += [f"Per layer, `{kind}`:", "", "| width C | layers | per layer | sub-parts |", "|---:|---:|---:|---|"]
        for width, info in res["temporal_per_width"].items():
            sub = "; ".join(f"{k} {v:,}" for k, v in info["parts"].items())
            lines.append(f"| {width} | {info['layers']} | {info['params_per_layer']:,} | {sub} |")
        lines.append("")
    if base["cmpf_parts"]:
        lines += ["CMPF:", "", "| CMPF part | params |", "|---|---:|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in base["cmpf_parts"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["sd15", "tiny"], choices=["sd15", "tiny"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--materialize", action="store_true", help="real random weights instead of meta (slow)")
    parser.add_argument("--json", type=Path, help="also write all counts to this JSON file")
    args = parser.parse_args(argv)
    if "tda" not in args.variants:
        args.variants.insert(0, "tda")  # the per-part table is the paper's model
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out: dict[str, dict] = {}
    for preset in args.presets:
        out[preset] = {kind: measure(build(preset, kind, args.materialize)) for kind in args.variants}
        print(render(preset, out[preset]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
