"""The paper's ablations at toy scale, on the procedural benchmark (numbers for docs/results.md).

Trained variants, each with the narrow demo recipe's stage-1/2 budget and its stage-0 VAE, per training
seed (--seeds; the seed draws the random start, the data order and the noise):
  full      — TDA + CMPF, the narrow demo recipe (configs/demo/stage1.yaml, stage2.yaml); --full
              names an already trained seed 0 instead (the table in docs/results.md used the
              demo model of that recipe, shipped until the tenth attempt)
  no_tda    — fixed-location temporal attention instead of TDA (stages 1 and 2)
  no_cmpf   — no CMPF: stage 1 alone, for the stage-1 + stage-2 step count (its own lr schedule)
Inference variants of the first seed's full model on long videos (T = --long-frames):
  no_ccf    — clip by clip          sliding — sliding instead of skip windows
  averaging — direct averaging of overlapping clips instead of distance weighting

    python benchmarks/ablations.py --train --seeds 0 1       # train every variant and seed, then measure
    python benchmarks/ablations.py --train no_tda --seeds 1 --train-only   # one job (run two at once)
    python benchmarks/ablations.py --seeds 0 1 --variants no_tda --no-report   # measure some (cached)
    python benchmarks/ablations.py --seeds 0 1                # measure what is not cached, write the table
    python benchmarks/ablations.py --inference-only   # only the full model's CCF variants (no training)

Writes runs/ablations/results.json, the table between the markers in docs/results.md and the
picture docs/images/ablations.png (one long held-out clip, every variant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lc4.training.stage_configs import derive_stage_config

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- ablations:begin -->", "<!-- ablations:end -->"
TRAINED = {
    # the full model is trained here too, unless --full names seed 0's (the narrow recipe's demo model)
    "full": {"model_config": None, "stage2": True},
    "no_tda": {"model_config": {"temporal": {"kind": "temporal_attention"}}, "stage2": True},
    # the same optimizer-step budget as full (steps1 + steps2), all of it stage 1, with its own lr
    # schedule over that length (an earlier driver continued full's stage 1 with the schedule
    # restarted at its peak rate, which mostly measured the restart: docs/results.md)
    "no_cmpf": {"model_config": {"cmpf": {"enabled": False}}, "stage2": False, "stage1_takes_stage2_steps": True},
}
INFERENCE = {  # name: pipeline options (applied to the full model)
    "full": {},
    "no_ccf": {"fusion": "none"},
    "sliding": {"window": "sliding"},
    "averaging": {"weighting": "uniform"},
}
LABELS = {"full": "full (TDA, CMPF, CCF skip+distance)", "no_tda": "w/o TDA (fixed temporal attention)",
          "no_cmpf": "w/o CMPF", "no_ccf": "w/o CCF (clip by clip)", "sliding": "sliding window (not skip)",
          "averaging": "direct averaging (not distance)"}
ORDER = ("full", "no_tda", "no_cmpf", "no_ccf", "sliding", "averaging")


def stage_config(stage: int, out: Path, steps: int, model_config: dict | None, init_from: str,
                 seed: int | None = None) -> Path:
    """configs/demo/stage{stage}.yaml writing under `out`, with the variant's model changes.

    Stage 1 takes only the stage-0 parts (VAE, E^lum) from `init_from`, as the demo's stage 1 does:
    the frozen CLIP is a fresh one (drawn with the run's seed, then the same deterministic
    calibration), and the variant's UNet has other layers (at seed 0 its random start is the
    demo's for the shared layers). Every seed shares the demo's stage-0 VAE.
    """
    parts = ["vae", "lum_encoder"] if stage == 1 else None
    return derive_stage_config(ROOT / f"configs/demo/stage{stage}.yaml", out, steps=steps,
                               model_config=model_config, init_from=init_from, init_parts=parts, seed=seed)


def variant_dir(name: str, seed: int, args: argparse.Namespace) -> Path:
    """Where a trained variant's stage folders live (seed 0 directly under --out)."""
    return Path(args.out) / name if seed == 0 else Path(args.out) / f"seed{seed}" / name


def trained_before(name: str, seed: int, args: argparse.Namespace) -> bool:
    """Whether --full names this (seed 0's full) model, so it is not trained here."""
    return name == "full" and seed == 0 and bool(args.full)


def model_folder(name: str, seed: int, args: argparse.Namespace) -> Path:
    """The exported model of one trained variant and seed."""
    if trained_before(name, seed, args):
        return Path(args.full)
    return variant_dir(name, seed, args) / ("stage2" if TRAINED[name]["stage2"] else "stage1") / "export"


def variant_stage1_config(name: str, seed: int, args: argparse.Namespace) -> Path:
    """The stage-1 config of one variant and seed, from the shared stage-0 parts."""
    spec = TRAINED[name]
    steps = args.steps1 + (args.steps2 if spec.get("stage1_takes_stage2_steps") else 0)
    return stage_config(1, variant_dir(name, seed, args) / "stage1", steps, spec["model_config"], args.stage0, seed)


def train_variant(name: str, seed: int, args: argparse.Namespace) -> Path:
    """Train one variant and seed through train.py; returns its exported model folder."""
    if trained_before(name, seed, args):
        return model_folder(name, seed, args)
    spec, base = TRAINED[name], variant_dir(name, seed, args)
    cfg1 = variant_stage1_config(name, seed, args)
    subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(cfg1)], check=True, cwd=ROOT)
    if spec["stage2"]:
        cfg2 = stage_config(2, base / "stage2", args.steps2, spec["model_config"], str(base / "stage1" / "export"),
                            seed)
        subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(cfg2)], check=True, cwd=ROOT)
    return model_folder(name, seed, args)


def fmt(mean: float, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not np.isnan(std) else "")


def across_seeds(runs: list[dict], part: str, key: str, digits: int = 2) -> str:
    """Mean over training seeds ± their standard deviation (one seed: ± over videos, accuracy only)."""
    values = [r[part][key] for r in runs if r.get(part) and r[part].get(key) is not None]
    if not values:
        return "—"
    if len(values) > 1:
        return fmt(float(np.mean(values)), float(np.std(values)), digits)
    std = runs[0][part].get(f"{key}_std") if key == "instance_accuracy" else None
    return fmt(values[0], std, digits)


def by_shape_count_cell(runs: list[dict]) -> str:
    """Accuracy on one-shape / two-shape short videos, mean over seeds (binding shows in the second)."""
    cells = []
    for n in ("1", "2"):
        values = [r["short"].get("accuracy_by_shape_count", {}).get(n) for r in runs if r.get("short")]
        values = [v for v in values if v is not None]
        cells.append(fmt(float(np.mean(values))) if values else "—")
    return " / ".join(cells)


def swaps_cell(runs: list[dict]) -> str:
    pairs = [(r["short"]["swap_followed"], r["short"]["swap_count"]) for r in runs
             if r.get("short") and r["short"]["swap_followed"] is not None]
    if not pairs:
        return "—"
    followed = sum(round(f * n) for f, n in pairs)
    total = sum(n for _, n in pairs)
    return f"{followed / total:.2f} ({followed}/{total})"


def table(results: dict, args: argparse.Namespace) -> str:
    """The markdown table of docs/results.md: one row per variant, pooled over its training seeds."""
    rows = ["| variant | seeds | accuracy (short) | 1 / 2 shapes | background acc. | swaps followed | "
            f"CDC ×1000 (short) | PSNR dB (short) | accuracy (T={args.long_frames}) | CDC ×1000 (long) | "
            "hue spread ° (long) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ORDER:
        runs = results.get(name)
        if not runs:
            continue
        short = any(r.get("short") for r in runs)
        rows.append(" | ".join([
            f"| {LABELS[name]}", str(len(runs)),
            across_seeds(runs, "short", "instance_accuracy") if short else "(same models as full)",
            by_shape_count_cell(runs) if short else "—",
            across_seeds(runs, "short", "background_accuracy"), swaps_cell(runs),
            across_seeds(runs, "short", "cdc_x1000", 1), across_seeds(runs, "short", "psnr", 1),
            across_seeds(runs, "long", "instance_accuracy"), across_seeds(runs, "long", "cdc_x1000", 1),
            across_seeds(runs, "long", "hue_spread_deg", 1) + " |",
        ]))
    return "\n".join(rows)


def write_docs(text: str, path: Path) -> None:
    doc = path.read_text() if path.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    tmp.replace(path)


def measure(name: str, seed: int, folder: Path, args: argparse.Namespace) -> dict:
    """Scores of one trained model (and, for the full model, its inference variants), cached in
    <out>/eval/<name>-s<seed>.json against the export's modification time: a re-run measures
    only what is new, and parallel runs can split the models (--variants)."""
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import evaluate_synthetic, held_out_video, pipeline_colorizer
    from lc4.pipeline import LC4Pipeline

    cache = Path(args.out) / "eval" / f"{name}-s{seed}.json"
    stamp = (folder / "model_index.json").stat().st_mtime
    # the inference variants (CCF) are measured on the first seed's full model only (they cost
    # four long colorizations each); the trained variants on every seed
    variants = INFERENCE if name == "full" and seed == args.seeds[0] else {name: {}}
    setting = {"videos": args.videos, "long_videos": args.long_videos, "long_frames": args.long_frames,
               "steps": args.steps, "guidance": args.guidance, "variants": sorted(variants)}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == stamp and cached.get("setting") == setting:
            return cached["variants"]
    pipe = LC4Pipeline.from_pretrained(folder)
    clip = held_out_video(0, args.long_frames, long=True)
    grey = to_grey(clip.rgb)
    out = {}
    for variant, options in variants.items():
        colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, **options)
        short = evaluate_synthetic(colorize, args.videos).as_dict() if variant in TRAINED else None
        long = evaluate_synthetic(colorize, args.long_videos, num_frames=args.long_frames, long=True,
                                  swaps=False, first=1).as_dict()
        strip = cache.parent / f"{variant}-s{seed}.npy"
        strip.parent.mkdir(parents=True, exist_ok=True)
        np.save(strip, colorize(grey, clip.caption))
        out[variant] = {"seed": seed, "model": str(folder), "options": options, "short": short, "long": long,
                        "strip": str(strip)}
        print(f"{variant} (seed {seed}): {json.dumps({k: v for k, v in out[variant].items() if k != 'model'})}",
              flush=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "setting": setting, "variants": out}, indent=2))
    tmp.replace(cache)
    return out


def main() -> None:
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import held_out_video
    from lc4.strip import make_strip

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="*", choices=sorted(TRAINED), default=None,
                   help="train these variants first, for every --seeds (no names: all of them)")
    p.add_argument("--train-only", action="store_true", help="train, then stop (run variants in parallel)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds (seed 0's full model is --full when given)")
    p.add_argument("--variants", nargs="+", choices=sorted(TRAINED), default=sorted(TRAINED),
                   help="trained variants to measure (split the measuring across parallel runs)")
    p.add_argument("--no-report", action="store_true", help="measure (and cache) only; no table or picture")
    p.add_argument("--full", default=None,
                   help="seed 0's full model, trained before with the same budget (e.g. runs/demo_stage2/export)")
    p.add_argument("--stage0", default="runs/demo_stage0/export", help="the shared stage-0 VAE/E^lum export")
    p.add_argument("--steps1", type=int, default=2500, help="stage-1 steps (the narrow demo recipe's)")
    p.add_argument("--steps2", type=int, default=500, help="stage-2 steps (the narrow demo recipe's)")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--videos", type=int, default=24, help="short held-out videos per variant")
    p.add_argument("--long-videos", type=int, default=2)
    p.add_argument("--long-frames", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--docs", default="docs/results.md")
    p.add_argument("--images", default="docs/images", help="where the picture goes")
    p.add_argument("--inference-only", action="store_true",
                   help="measure only the full model and its inference variants; print, write "
                        "<out>/inference.json and docs/images/ccf_variants.png, leave the docs table alone")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    to_train = [] if args.train is None else (args.train or sorted(TRAINED))
    names = ["full"] if args.inference_only else [n for n in TRAINED if n in args.variants]
    models = {}
    for seed in args.seeds:
        for name in names:
            if name in to_train:
                train_variant(name, seed, args)
            models[name, seed] = model_folder(name, seed, args)
    if args.train_only:
        return
    missing = [str(m) for m in models.values() if not (m / "model_index.json").is_file()]
    if missing:
        sys.exit(f"ablations: no trained model at {', '.join(missing)} (run with --train)")

    t0, results = time.time(), {}
    for (name, seed), folder in models.items():
        for variant, scores in measure(name, seed, folder, args).items():
            results.setdefault(variant, []).append(scores)
    if args.no_report:
        return
    results["meta"] = {"seconds": round(time.time() - t0), "videos": args.videos, "long_videos": args.long_videos,
                       "long_frames": args.long_frames, "sampling_steps": args.steps, "guidance": args.guidance,
                       "training_seeds": args.seeds, "steps1": args.steps1, "steps2": args.steps2}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("inference.json" if args.inference_only else "results.json")).write_text(json.dumps(results, indent=2))
    md = table(results, args)
    print(md)
    if not args.inference_only:
        write_docs(md, ROOT / args.docs)
    clip = held_out_video(0, args.long_frames, long=True)
    grey = to_grey(clip.rgb)
    first_seed = args.seeds[0]
    order = [v for v in ORDER if v in results]
    strips = [np.load(next(r["strip"] for r in results[v] if r["seed"] == first_seed)) for v in order]
    image = make_strip([grey, clip.rgb] + strips,
                       labels=["grey", "ground truth"] + [v.replace("_", " ") for v in order], frames=8, height=64)
    images = ROOT / args.images
    images.mkdir(parents=True, exist_ok=True)
    image.save(images / ("ccf_variants.png" if args.inference_only else "ablations.png"))
    print(f"caption of the pictured clip: {clip.caption!r} (training seed {first_seed})")


if __name__ == "__main__":
    main()
