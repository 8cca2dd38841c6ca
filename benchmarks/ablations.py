"""L-C4's ablations on the L-C4 demo recipe and the free-colour benchmark (numbers for docs/results.md).

Every trained variant re-runs the recipe's video stage (configs/demo/lc4_stage1_video.yaml: 8-frame
clips, half of the captions free-colour) from the same image-stage export (--image, which holds the
one stage-0 VAE), with the same optimizer-step budget, once per training seed (--seeds):
  full         TDA + CMPF trained jointly (the recipe); --full names seed 0's run of the recipe itself
  no_tda       w/o TDA: fixed-location temporal attention (AnimateDiff-style) instead
  no_temporal  no temporal layer at all: every frame is coloured on its own
  no_cmpf      w/o CMPF: the UNet alone
Inference variants of every seed's full model, on long free-colour videos (T = --long-frames):
  ccf_exact (the paper's CCF), ccf_bounded (noise predictions only), clip_by_clip, sliding (sliding
  instead of skip windows), averaging (direct averaging instead of distance weights)

    python benchmarks/ablations.py --train --seeds 0 1 --full runs/lc4_stage1_video/export
    python benchmarks/ablations.py --train no_tda --seeds 1 --train-only     # one job (run two at once)
    python benchmarks/ablations.py --seeds 0 1 --variants no_tda --no-report  # measure some (cached)
    python benchmarks/ablations.py --seeds 0 1 --full runs/lc4_stage1_video/export   # the table

Writes runs/ablations/results.json, the table between the markers in docs/results.md and the
pictures docs/images/ablations.png (one long free-colour clip, every variant) and
docs/images/free_long.png (clip by clip against CCF: the strip and an unnamed shape's hue over time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lc4.training.stage_configs import derive_stage_config

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- ablations:begin -->", "<!-- ablations:end -->"
VIDEO_STAGE = ROOT / "configs/demo/lc4_stage1_video.yaml"
TRAINED = {  # name: (model config changes, training-module argument changes)
    "full": (None, None),
    "no_tda": ({"temporal": {"kind": "temporal_attention"}}, None),
    "no_temporal": ({"temporal": {"kind": "none"}}, None),
    "no_cmpf": ({"cmpf": {"enabled": False}}, {"use_cmpf": False, "train_parts": ["unet"]}),
}
INFERENCE = {  # name: pipeline options (applied to the full model)
    "ccf_exact": {"fusion": "exact"},
    "ccf_bounded": {"fusion": "bounded"},
    "clip_by_clip": {"fusion": "none"},
    "sliding": {"fusion": "exact", "window": "sliding"},
    "averaging": {"fusion": "exact", "weighting": "uniform"},
}
LABELS = {"full": "full (TDA, CMPF; CCF exact)", "no_tda": "w/o TDA (fixed temporal attention)",
          "no_temporal": "no temporal layer", "no_cmpf": "w/o CMPF",
          "ccf_exact": "full, CCF skip + distance, exact", "ccf_bounded": "full, CCF skip + distance, bounded",
          "clip_by_clip": "full, clip by clip", "sliding": "full, sliding window",
          "averaging": "full, direct averaging"}


def stage_config(out: Path, steps: int, name: str, image: str, seed: int | None = None,
                 base: Path = VIDEO_STAGE) -> Path:
    """The video stage's config (`base`) for one variant, writing under `out`, starting from `image`."""
    model_config, model_args = TRAINED[name]
    return derive_stage_config(base, out, steps=steps, model_config=model_config, init_from=image,
                               seed=seed, model_args=model_args)


def variant_dir(name: str, seed: int, args: argparse.Namespace) -> Path:
    return Path(args.out) / f"seed{seed}" / name


def model_folder(name: str, seed: int, args: argparse.Namespace) -> Path:
    """The exported model of one trained variant and seed (seed 0's full model may be --full)."""
    if name == "full" and seed == 0 and args.full:
        return Path(args.full)
    return variant_dir(name, seed, args) / "export"


def train_variant(name: str, seed: int, args: argparse.Namespace) -> Path:
    """Train one variant and seed through train.py (resuming its last checkpoint); returns its export."""
    folder = model_folder(name, seed, args)
    if (folder / "model_index.json").is_file():
        return folder
    out = variant_dir(name, seed, args)
    cfg = stage_config(out, args.steps_video, name, args.image, seed, Path(args.video_stage))
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(cfg)]
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        cmd += ["--ckpt_path", str(last)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return folder


# ----------------------------------------------------------------------------- the table


def fmt(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not np.isnan(std) else "")


def across_seeds(runs: list[dict], part: str, key: str, digits: int = 2) -> str:
    """Mean over training seeds ± their standard deviation."""
    values = [r[part][key] for r in runs if r.get(part) and r[part].get(key) is not None]
    values = [v for v in values if not (isinstance(v, float) and np.isnan(v))]
    if not values:
        return "—"
    return fmt(float(np.mean(values)), float(np.std(values)) if len(values) > 1 else None, digits)


def by_shape_count_cell(runs: list[dict]) -> str:
    cells = []
    for n in ("1", "2"):
        values = [r["named"].get("accuracy_by_shape_count", {}).get(n) for r in runs if r.get("named")]
        values = [v for v in values if v is not None]
        cells.append(fmt(float(np.mean(values)), float(np.std(values)) if len(values) > 1 else None)
                     if values else "—")
    return " / ".join(cells)


def swaps_cell(runs: list[dict]) -> str:
    pairs = [(r["named"]["swap_followed"], r["named"]["swap_count"]) for r in runs
             if r.get("named") and r["named"]["swap_followed"] is not None]
    if not pairs:
        return "—"
    followed = sum(round(f * n) for f, n in pairs)
    return f"{followed}/{sum(n for _, n in pairs)}"


def table(results: dict, args: argparse.Namespace) -> str:
    """One row per trained variant, then one per inference variant of the full model; seeds pooled."""
    rows = ["| variant | seeds | named acc. | 1 / 2 shapes | swaps | flip in clip (T=8) | "
            f"flip in clips (T={args.long_frames}) | flip over video (T={args.long_frames}) | seam change | "
            "commitment | CDC ×1000 | PSNR dB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in [*TRAINED, *INFERENCE]:
        runs = results.get(name)
        if not runs:
            continue
        named = any(r.get("named") for r in runs)
        rows.append(" | ".join([
            f"| {LABELS[name]}", str(len(runs)),
            across_seeds(runs, "named", "instance_accuracy") if named else "(as full)",
            by_shape_count_cell(runs) if named else "—", swaps_cell(runs),
            across_seeds(runs, "free", "flip_rate_clip"),
            across_seeds(runs, "long", "flip_rate_clip"), across_seeds(runs, "long", "flip_rate_video"),
            across_seeds(runs, "long", "seam_change_rate"),
            across_seeds(runs, "free", "commitment") if any(r.get("free") for r in runs)
            else across_seeds(runs, "long", "commitment"),
            across_seeds(runs, "named", "cdc_x1000", 1), across_seeds(runs, "named", "psnr", 1) + " |",
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


# ----------------------------------------------------------------------------- measuring


def long_clip(args: argparse.Namespace):
    from lc4.evaluation.synthetic import held_out_video

    return held_out_video(args.picture_clip, args.long_frames, long=True, colors_named="some")


def measure(name: str, seed: int, folder: Path, args: argparse.Namespace) -> dict:
    """Scores of one trained model and, for a full model, of its inference variants; cached in
    <out>/eval/<name>-s<seed>.json against the export's time stamp and the settings."""
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import evaluate_free_synthetic, evaluate_synthetic, pipeline_colorizer
    from lc4.pipeline import LC4Pipeline

    cache = Path(args.out) / "eval" / f"{name}-s{seed}.json"
    stamp = (folder / "model_index.json").stat().st_mtime
    # a trained variant runs with the paper's CCF (exact); the full model also with the other inference
    # variants, its own long-video scores standing for the ccf_exact row
    variants = {name: INFERENCE["ccf_exact"]}
    if name == "full":
        variants.update({v: o for v, o in INFERENCE.items() if v != "ccf_exact"})
    setting = {k: getattr(args, k) for k in ("videos", "free_videos", "long_videos", "long_videos_trained",
                                             "long_frames", "steps", "long_steps", "guidance", "sample_seeds",
                                             "picture_clip")}
    setting["variants"] = sorted(variants)
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("stamp") == stamp and cached.get("setting") == setting:
            return cached["variants"]
    pipe = LC4Pipeline.from_pretrained(folder)
    clip = long_clip(args)
    grey = to_grey(clip.rgb)
    out = {}
    for variant, options in variants.items():
        # the full model's inference variants are the CCF comparison: they get every long video; a
        # trained variant's own long-video row gets --long-videos-trained of them
        long_videos = args.long_videos if name == "full" else args.long_videos_trained
        t0 = time.time()
        colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, **options)
        colorize_long = pipeline_colorizer(pipe, steps=args.long_steps, guidance=args.guidance, **options)
        trained = variant in TRAINED
        named = evaluate_synthetic(colorize, args.videos).as_dict() if trained else None
        free = evaluate_free_synthetic(colorize, args.free_videos, seeds=tuple(args.sample_seeds)).as_dict() \
            if trained else None
        long = evaluate_free_synthetic(colorize_long, long_videos, seeds=(0,), num_frames=args.long_frames,
                                       long=True, first=args.picture_clip).as_dict()
        strip = cache.parent / f"{variant}-s{seed}.npy"
        strip.parent.mkdir(parents=True, exist_ok=True)
        np.save(strip, colorize_long(grey, clip.caption))
        if named:
            named.pop("per_video_accuracy", None)
        out[variant] = {"seed": seed, "model": str(folder), "options": options, "named": named, "free": free,
                        "long": long, "strip": str(strip), "seconds": round(time.time() - t0)}
        print(f"{variant} (seed {seed}): {json.dumps({k: v for k, v in out[variant].items() if k != 'model'})}",
              flush=True)
    if name == "full":
        out["ccf_exact"] = dict(out["full"], named=None, free=None)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stamp": stamp, "setting": setting, "variants": out}, indent=2))
    tmp.replace(cache)
    return out


def unnamed_hue(video: np.ndarray, masks: np.ndarray, index: int) -> np.ndarray:
    """The hue angle (degrees) of shape `index`'s mean (a, b) per frame (NaN where it is not scored)."""
    from lc4.metrics.instance import instance_mean_ab

    mean, valid = instance_mean_ab(video, masks[:, index:index + 1])
    hue = np.degrees(np.arctan2(mean[:, 0, 1], mean[:, 0, 0])) % 360
    return np.where(valid[:, 0], hue, np.nan)


def free_long_picture(results: dict, args: argparse.Namespace, path: Path) -> None:
    """Clip by clip against CCF on one long free-colour clip: frames, and an unnamed shape's hue over time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lc4.color import to_grey
    from lc4.strip import make_strip

    clip = long_clip(args)
    seed = args.seeds[0]
    videos = {v: np.load(next(r["strip"] for r in results[v] if r["seed"] == seed))
              for v in ("clip_by_clip", "ccf_exact") if v in results}
    if not videos or not clip.unnamed:
        return
    strip = make_strip([to_grey(clip.rgb), clip.rgb, *videos.values()],
                       labels=["grey", "ground truth", *[LABELS[v].removeprefix("full, ") for v in videos]],
                       frames=16, height=48)
    shape = clip.unnamed[0]
    fig = Figure(figsize=(strip.width / 100, 2.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for v, video in videos.items():
        ax.plot(unnamed_hue(video, clip.masks, shape), ".", ms=3, label=LABELS[v].removeprefix("full, "))
    for t in range(8, args.long_frames, 8):
        ax.axvline(t - 0.5, color="0.9", lw=0.5, zorder=0)
    ax.set_xlim(0, args.long_frames)
    ax.set_ylim(0, 360)
    ax.set_xlabel("frame (grey lines: clip seams)")
    ax.set_ylabel(f"hue of the {clip.shapes[shape]} (°)")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    from PIL import Image

    plot = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
    out = Image.new("RGB", (strip.width, strip.height + plot.height), "white")
    out.paste(strip, (0, 0))
    out.paste(plot, (0, strip.height))
    out.save(path)
    print(f"wrote {path}: {clip.caption!r}, unnamed shape {clip.shapes[shape]} (truth {clip.instance_colors[shape]})")


def main() -> None:
    from lc4.color import to_grey
    from lc4.strip import make_strip

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="*", choices=sorted(TRAINED), default=None,
                   help="train these variants first, for every --seeds (no names: all of them)")
    p.add_argument("--train-only", action="store_true", help="train, then stop (run variants in parallel)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument("--variants", nargs="+", choices=sorted(TRAINED), default=list(TRAINED),
                   help="trained variants to measure (split the measuring across parallel runs)")
    p.add_argument("--no-report", action="store_true", help="measure (and cache) only; no table or picture")
    p.add_argument("--full", default=None, help="seed 0's full model: the recipe's own video stage export")
    p.add_argument("--image", default="runs/lc4_stage1_image/export", help="the shared image-stage export")
    p.add_argument("--video-stage", default=str(VIDEO_STAGE), help="the video stage's config, every variant's base")
    p.add_argument("--steps-video", type=int, default=None,
                   help="video-stage optimizer steps (default: --video-stage's max_steps)")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--videos", type=int, default=24, help="short named held-out videos per model")
    p.add_argument("--free-videos", type=int, default=16, help="short free-colour videos per model")
    p.add_argument("--sample-seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds of the free videos")
    p.add_argument("--long-videos", type=int, default=2, help="long free-colour videos per model and variant")
    p.add_argument("--long-videos-trained", type=int, default=1,
                   help="long free-colour videos for the trained variants other than full")
    p.add_argument("--long-frames", type=int, default=128)
    p.add_argument("--long-steps", type=int, default=10,
                   help="sampling steps on long videos (a CCF step costs 5 clips' worth per frame at T = 128)")
    p.add_argument("--picture-clip", type=int, default=0, help="first long held-out clip (also pictured)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--docs", default="docs/results.md")
    p.add_argument("--images", default="docs/images", help="where the pictures go")
    args = p.parse_args()
    if args.steps_video is None:
        import yaml

        args.steps_video = int(yaml.safe_load(Path(args.video_stage).read_text())["trainer"]["max_steps"])
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the training subprocesses too
    to_train = [] if args.train is None else (args.train or list(TRAINED))
    models = {}
    for seed in args.seeds:
        for name in args.variants:
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
    results["meta"] = {"seconds": round(time.time() - t0), **{k: getattr(args, k) for k in (
        "videos", "free_videos", "sample_seeds", "long_videos", "long_videos_trained", "long_frames", "steps",
        "long_steps", "guidance", "seeds",
        "steps_video", "image")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    md = table(results, args)
    print(md)
    write_docs(md, ROOT / args.docs)
    images = ROOT / args.images
    images.mkdir(parents=True, exist_ok=True)
    clip = long_clip(args)
    order = [v for v in [*TRAINED, *INFERENCE] if v in results and v != "full"]
    strips = [np.load(next(r["strip"] for r in results[v] if r["seed"] == args.seeds[0])) for v in order]
    make_strip([to_grey(clip.rgb), clip.rgb, *strips], labels=["grey", "ground truth", *[v.replace("_", " ")
               for v in order]], frames=8, height=64).save(images / "ablations.png")
    free_long_picture(results, args, images / "free_long.png")
    print(f"caption of the pictured clip: {clip.caption!r} (training seed {args.seeds[0]})")


if __name__ == "__main__":
    main()
