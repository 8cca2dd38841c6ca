"""The paper's ablations at toy scale, on the procedural benchmark (numbers for docs/results.md).

Trained variants, each with the demo model's stage-1/2 budget and its stage-0 VAE:
  full      — the demo model (scripts/train_demo.sh), TDA + CMPF
  no_tda    — fixed-location temporal attention instead of TDA (stages 1 and 2)
  no_cmpf   — no CMPF: the demo's stage-1 UNet trained on for the stage-2 step count
Inference variants of the full model on long videos (T = --long-frames):
  no_ccf    — clip by clip          sliding — sliding instead of skip windows
  averaging — direct averaging of overlapping clips instead of distance weighting

    python benchmarks/ablations.py --train            # train no_tda / no_cmpf, then measure
    python benchmarks/ablations.py --train no_tda --train-only   # one variant (run two at once)
    python benchmarks/ablations.py                    # measure already trained variants
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
    "no_tda": {"model_config": {"temporal": {"kind": "temporal_attention"}}, "stage2": True},
    # stage 1 never uses CMPF, so the first --steps1 steps would repeat the demo's stage 1 bit for
    # bit: w/o CMPF continues the demo's stage-1 UNet for --steps2 stage-1 steps instead of stage 2
    "no_cmpf": {"model_config": {"cmpf": {"enabled": False}}, "stage2": False, "continues_demo_stage1": True},
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


def stage_config(stage: int, out: Path, steps: int, model_config: dict, init_from: str) -> Path:
    """configs/demo/stage{stage}.yaml writing under `out`, with the variant's model changes.

    Stage 1 takes only the stage-0 parts (VAE, E^lum) from `init_from`, as the demo's stage 1 does:
    the frozen CLIP is the demo's (seed 0, then the same deterministic calibration), and the
    variant's UNet has other layers (its random start is the demo's for the shared layers).
    """
    parts = ["vae", "lum_encoder"] if stage == 1 else None
    return derive_stage_config(ROOT / f"configs/demo/stage{stage}.yaml", out, steps=steps,
                               model_config=model_config, init_from=init_from, init_parts=parts)


def train_variant(name: str, args: argparse.Namespace) -> Path:
    """Train one ablation through train.py; returns its exported model folder."""
    spec, base = TRAINED[name], Path(args.out) / name
    if spec.get("continues_demo_stage1"):  # same optimizer-step budget: steps1 (shared) + steps2
        cfg1 = derive_stage_config(ROOT / "configs/demo/stage1.yaml", base / "stage1", steps=args.steps2,
                                   model_config=spec["model_config"], init_from=args.stage1)
    else:
        cfg1 = stage_config(1, base / "stage1", args.steps1, spec["model_config"], args.stage0)
    subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(cfg1)], check=True, cwd=ROOT)
    final = base / "stage1" / "export"
    if spec["stage2"]:
        cfg2 = stage_config(2, base / "stage2", args.steps2, spec["model_config"], str(final))
        subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(cfg2)], check=True, cwd=ROOT)
        final = base / "stage2" / "export"
    return final


def fmt(mean: float, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not np.isnan(std) else "")


def table(results: dict, args: argparse.Namespace) -> str:
    """The markdown table of docs/results.md."""
    rows = ["| variant | accuracy (short) | background acc. | swaps followed | CDC ×1000 (short) | PSNR dB (short) | "
            f"accuracy (T={args.long_frames}) | CDC ×1000 (long) | hue spread ° (long) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("full", "no_tda", "no_cmpf", "no_ccf", "sliding", "averaging"):
        r = results.get(name)
        if r is None:
            continue
        s, lg = r.get("short"), r["long"]
        swaps = f"{s['swap_followed']:.2f} ({s['swap_count']})" if s and s["swap_followed"] is not None else "—"
        rows.append(" | ".join([
            f"| {LABELS[name]}",
            fmt(s["instance_accuracy"], s["instance_accuracy_std"]) if s else "(same model as full)",
            fmt(s["background_accuracy"]) if s else "—", swaps, fmt(s["cdc_x1000"], digits=1) if s else "—", fmt(s["psnr"], digits=1) if s else "—",
            fmt(lg["instance_accuracy"], lg["instance_accuracy_std"]), fmt(lg["cdc_x1000"], digits=1),
            fmt(lg["hue_spread_deg"], digits=1) + " |",
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


def main() -> None:
    from lc4.evaluation.synthetic import evaluate_synthetic, held_out_video, pipeline_colorizer
    from lc4.pipeline import LC4Pipeline
    from lc4.color import to_grey
    from lc4.strip import make_strip

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="*", choices=sorted(TRAINED), default=None,
                   help="train these variants first (no names: all of them)")
    p.add_argument("--train-only", action="store_true", help="train, then stop (run variants in parallel)")
    p.add_argument("--full", default="lc4/assets/demo-model")
    p.add_argument("--stage0", default="runs/demo_stage0/export", help="the shared stage-0 VAE/E^lum export")
    p.add_argument("--stage1", default="runs/demo_stage1/export", help="the demo's stage-1 export (for no_cmpf)")
    p.add_argument("--steps1", type=int, default=1500, help="stage-1 steps (as the demo model's)")
    p.add_argument("--steps2", type=int, default=500, help="stage-2 steps (as the demo model's)")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--videos", type=int, default=24, help="short held-out videos per variant")
    p.add_argument("--long-videos", type=int, default=4)
    p.add_argument("--long-frames", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--docs", default="docs/results.md")
    p.add_argument("--inference-only", action="store_true",
                   help="measure only the full model and its inference variants; print, write "
                        "<out>/inference.json and docs/images/ccf_variants.png, leave the docs table alone")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    to_train = [] if args.train is None else (args.train or sorted(TRAINED))
    models = {"full": Path(args.full)}
    for name in ([] if args.inference_only else TRAINED):
        models[name] = train_variant(name, args) if name in to_train else Path(args.out) / name / (
            "stage2" if TRAINED[name]["stage2"] else "stage1") / "export"
    if args.train_only:
        return
    missing = [str(m) for m in models.values() if not (m / "model_index.json").is_file()]
    if missing:
        sys.exit(f"ablations: no trained model at {', '.join(missing)} (run with --train)")

    t0, results, strips = time.time(), {}, {}
    clip = held_out_video(0, args.long_frames, long=True)
    grey = to_grey(clip.rgb)
    for name, folder in models.items():
        pipe = LC4Pipeline.from_pretrained(folder)
        variants = INFERENCE if name == "full" else {name: {}}
        for variant, options in variants.items():
            colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, **options)
            short = None
            if variant in ("full", "no_tda", "no_cmpf"):
                short = evaluate_synthetic(colorize, args.videos).as_dict()
            long = evaluate_synthetic(colorize, args.long_videos, num_frames=args.long_frames, long=True,
                                      swaps=False, first=1).as_dict()
            results[variant] = {"model": str(folder), "options": options, "short": short, "long": long}
            strips[variant] = colorize(grey, clip.caption)
            print(f"{variant}: {json.dumps({k: v for k, v in results[variant].items() if k != 'model'})}",
                  flush=True)
    results["meta"] = {"seconds": round(time.time() - t0), "videos": args.videos, "long_videos": args.long_videos,
                       "long_frames": args.long_frames, "sampling_steps": args.steps, "guidance": args.guidance,
                       "training_seeds": 1, "steps1": args.steps1, "steps2": args.steps2}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("inference.json" if args.inference_only else "results.json")).write_text(json.dumps(results, indent=2))
    md = table(results, args)
    print(md)
    if not args.inference_only:
        write_docs(md, ROOT / args.docs)
    order = [v for v in ("full", "no_tda", "no_cmpf", "no_ccf", "sliding", "averaging") if v in strips]
    image = make_strip([grey, clip.rgb] + [strips[v] for v in order],
                       labels=["grey", "ground truth"] + [v.replace("_", " ") for v in order], frames=8, height=64)
    (ROOT / "docs/images").mkdir(parents=True, exist_ok=True)
    image.save(ROOT / "docs/images" / ("ccf_variants.png" if args.inference_only else "ablations.png"))
    print(f"caption of the pictured clip: {clip.caption!r}")


if __name__ == "__main__":
    main()
