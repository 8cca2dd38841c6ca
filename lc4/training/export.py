"""`lc4 export CKPT OUT`: a Lightning training checkpoint → a model folder `lc4 colorize --model` takes.

The checkpoint holds every weight (frozen parts at full precision) and the model's `LC4Config`,
so the model is rebuilt from that config and filled from the checkpoint: no SD1.5 download, no
dependence on the working directory. The EMA weights replace the raw ones unless `--no-ema`.
The result is the same folder `ExportOnTrainEnd` writes at the end of a run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def export_checkpoint(ckpt: str | Path, out: str | Path, use_ema: bool = True) -> Path:
    """Rebuild the model from the checkpoint's config, load its (EMA) weights and save it to `out`."""
    import torch

    from ..models.config import LC4Config
    from ..models.lc4 import LC4Model
    from .module import LC4Module, model_state_from_checkpoint

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    try:
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, needs full unpickling
        raise ValueError(f"{ckpt} is not a readable training checkpoint: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(data, dict) or "state_dict" not in data or "hyper_parameters" not in data:
        raise ValueError(f"{ckpt} is not an lc4 training checkpoint (no state_dict/hyper_parameters)")
    if "lc4_config" in data:
        model = LC4Model.from_config(LC4Config.from_dict(data["lc4_config"]), seed=0)
        state = model_state_from_checkpoint(data, use_ema=use_ema)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            shown = (missing or unexpected)[0]
            raise ValueError(f"{ckpt}: weights do not match its model config ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected, e.g. {shown})")
        return model.save_pretrained(out)
    # checkpoints written before lc4_config was stored: rebuild the module from its hyper-parameters
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
