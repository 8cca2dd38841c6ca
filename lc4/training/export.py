"""`lc4 export CKPT OUT`: a Lightning training checkpoint → a model folder `lc4 colorize --model` takes."""

from __future__ import annotations

import argparse
from pathlib import Path


def export_checkpoint(ckpt: str | Path, out: str | Path, use_ema: bool = True) -> Path:
    """Rebuild the stage's module from the checkpoint's hyper-parameters, load its weights and save."""
    import torch

    from .module import LC4Module

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "state_dict" not in data or "hyper_parameters" not in data:
        raise ValueError(f"{ckpt} is not an lc4 training checkpoint (no state_dict/hyper_parameters)")
    hp = dict(data["hyper_parameters"])
    hp["init_from"] = None
    module = LC4Module(**hp)
    module.load_state_dict(data["state_dict"])
    module.on_load_checkpoint(data)
    return module.export(out, use_ema=use_ema)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="turn a training checkpoint into a model folder for lc4 colorize")
    p.add_argument("checkpoint", help="Lightning .ckpt written by lc4 train")
    p.add_argument("output", help="model folder to write")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of their EMA")
    return p


def run(args: argparse.Namespace) -> int:
    out = export_checkpoint(args.checkpoint, args.output, use_ema=not args.no_ema)
    print(f"wrote {out}")
    return 0
