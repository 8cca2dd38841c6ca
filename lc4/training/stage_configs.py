"""Derive a training config from a stage YAML: same recipe, another output folder and budget.

Used by the ablation driver (`benchmarks/ablations.py`, one variant per folder), so that variants
differ from the demo recipe only where they say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

__all__ = ["derive_stage_config"]


def derive_stage_config(
    base: str | Path,
    out: str | Path,
    *,
    steps: int,
    model_config: dict[str, Any] | None = None,
    init_from: str | None = None,
    init_parts: Sequence[str] | None = None,
    data: dict[str, Any] | None = None,
    seed: int | None = None,
    model_args: dict[str, Any] | None = None,
) -> Path:
    """Write `<out>/<base name>` from `base` with every output (logs, export) under `out`.

    `model_config` changes the model (e.g. `{"temporal": {"kind": "temporal_attention"}}`), each
    section merged over the base's own `model_config` section,
    `init_from`/`init_parts` where its weights start, `data` overrides data settings, `seed`
    replaces `seed_everything` (random start, data order and noise of another training seed),
    `model_args` overrides training-module arguments (e.g. `{"use_cmpf": False, "train_parts": ["unet"]}`).
    """
    cfg = yaml.safe_load(Path(base).read_text())
    out = Path(out)
    model, trainer = cfg.setdefault("model", {}), cfg.setdefault("trainer", {})
    if model_config:  # section by section over the base's own model_config (e.g. its temporal options)
        merged = dict(model.get("model_config") or {})
        for key, value in model_config.items():
            old = merged.get(key)
            merged[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        model["model_config"] = merged
    if init_from is not None:
        model["init_from"] = str(init_from)
    if init_parts is not None:
        model["init_parts"] = list(init_parts)
    if data:
        cfg.setdefault("data", {}).update(data)
    model.update(model_args or {})
    if seed is not None:
        cfg["seed_everything"] = int(seed)
    trainer["max_steps"] = int(steps)
    trainer["default_root_dir"] = str(out)
    logger = trainer.get("logger")
    if isinstance(logger, dict):
        logger.setdefault("init_args", {})["save_dir"] = str(out)
    for callback in trainer.get("callbacks") or []:
        if callback.get("class_path", "").endswith("ExportOnTrainEnd"):
            callback.setdefault("init_args", {})["dirpath"] = str(out / "export")
    out.mkdir(parents=True, exist_ok=True)
    path = out / Path(base).name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
