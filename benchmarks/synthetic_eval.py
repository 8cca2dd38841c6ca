"""Measure a model on held-out procedural benchmark videos: does it follow the sentence?

Prints (and writes as JSON with --json) instance colour accuracy (chance = 1/8), the fraction of
caption colour swaps the model follows, CDC (×1000), PSNR against the ground truth and the
long-range hue spread (`lc4.evaluation.synthetic`); with --free, the free-colour scores of videos
whose captions leave some colours unnamed (flip rates, seam changes, commitment). Seeds start at
900 000, never used in training.

    python benchmarks/synthetic_eval.py --model lc4/assets/demo-model --videos 24
    python benchmarks/synthetic_eval.py --videos 0 --free 16 --free-long 2 --fusion none   # clip by clip
    python benchmarks/synthetic_eval.py --model runs/demo_stage0/export --reconstruction
    python benchmarks/synthetic_eval.py --videos 0 --strips docs/images/demo_model.png --strip-clips 4
    python benchmarks/synthetic_eval.py --videos 0 --recolour 0,2,3,5,9,10   # which colour words it follows
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lc4.evaluation.synthetic import (evaluate_free_synthetic, evaluate_synthetic, pipeline_colorizer,
                                      reconstruction_scores)


def main() -> None:
    from lc4.pipeline import LC4Pipeline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--long-frames", type=int, default=128)
    p.add_argument("--long", action="store_true", help="also evaluate long videos (CCF vs clip-by-clip)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--free", type=int, default=0, help="free-colour videos to score (each with every --free-seeds)")
    p.add_argument("--free-long", type=int, default=0, help="long free-colour videos (T = --long-frames) to score")
    p.add_argument("--free-seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds of the free videos")
    p.add_argument("--fusion", default="auto", choices=["auto", "exact", "bounded", "none"],
                   help="CCF mode for every colorization here")
    p.add_argument("--noise-correlation", type=float, default=0.0,
                   help="share this much of the initial noise between frames (LC4Pipeline noise_correlation)")
    p.add_argument("--temporal-guidance", type=float, default=None,
                   help="scale of the temporal layers' term, the sentence guided with them off (LC4Pipeline "
                   "temporal_guidance); default: classifier-free guidance through them")
    p.add_argument("--temporal-gate", type=float, default=None,
                   help="width of the temporal term's per-pixel gate on the sentence's term (LC4Pipeline temporal_gate)")
    p.add_argument("--reconstruction", action="store_true",
                   help="only the VAE round trip's accuracy (the ceiling that stage 0 sets)")
    p.add_argument("--json", default=None)
    p.add_argument("--strips", default=None, help="also write a PNG: grey | ours | truth for the first clips")
    p.add_argument("--strip-clips", type=int, default=4)
    p.add_argument("--recolour", default=None,
                   help="comma-separated one-shape held-out clips: name each palette colour in turn, print the hit rate")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = LC4Pipeline.from_pretrained(args.model)
    t0 = time.time()
    results: dict = {}
    if args.reconstruction:
        results["reconstruction"] = reconstruction_scores(pipe.model, args.videos, args.frames, args.size)
    else:
        colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                      fusion=args.fusion, noise_correlation=args.noise_correlation,
                                      temporal_guidance=args.temporal_guidance, temporal_gate=args.temporal_gate)
        if args.videos > 0:
            results["short"] = evaluate_synthetic(colorize, args.videos, num_frames=args.frames,
                                                  size=args.size).as_dict()
        if args.free > 0:
            results["free"] = evaluate_free_synthetic(colorize, args.free, seeds=tuple(args.free_seeds),
                                                      num_frames=args.frames, size=args.size).as_dict()
        if args.free_long > 0:
            results["free_long"] = evaluate_free_synthetic(colorize, args.free_long, seeds=tuple(args.free_seeds),
                                                           num_frames=args.long_frames, size=args.size,
                                                           long=True).as_dict()
        if args.long and args.videos > 0:
            for name, fusion in (("long_ccf", "bounded"), ("long_no_ccf", "none")):
                colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                              fusion=fusion)
                results[name] = evaluate_synthetic(colorize, args.videos, num_frames=args.long_frames,
                                                   size=args.size, long=True, swaps=False).as_dict()
    if args.strips:
        colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, seed=args.seed)
        write_strips(colorize, args.strips, args.strip_clips, args.frames, args.size)
    if args.recolour:
        colorize = pipeline_colorizer(pipe, steps=args.steps, guidance=args.guidance, seed=args.seed)
        results["recolour"] = recolour_table(colorize, [int(k) for k in args.recolour.split(",")], args.frames,
                                             args.size)
    results["seconds"] = round(time.time() - t0, 1)
    for part in results.values():
        if isinstance(part, dict):
            part.pop("per_video_accuracy", None)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


def write_strips(colorize, path: str, clips: int, frames: int, size: int) -> None:
    """Held-out clips 0..clips-1, three rows each (grey, ours, ground truth), captions printed."""
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import held_out_video
    from lc4.strip import make_strip

    videos, labels = [], []
    for k in range(clips):
        video = held_out_video(k, num_frames=frames, size=size)
        grey = to_grey(video.rgb)
        videos += [grey, colorize(grey, video.caption), video.rgb]
        labels += [f"{k}: grey", f"{k}: ours", f"{k}: truth"]
        print(f"clip {k}: {video.caption}")
    make_strip(videos, labels, frames=min(frames, 6)).save(path)
    print(f"wrote {path}")


def recolour_table(colorize, clips: list[int], frames: int, size: int) -> dict[str, dict[str, float]]:
    """Per one-shape clip: the shape's colour word replaced by each palette colour; the fraction of
    frames painted in the named colour (clips with more than one shape are skipped)."""
    from lc4.color import to_grey
    from lc4.data.synthetic import SHAPE_PALETTE, caption_with_colors
    from lc4.evaluation.synthetic import held_out_video
    from lc4.metrics import instance_color_accuracy

    table = {}
    for k in clips:
        video = held_out_video(k, num_frames=frames, size=size)
        if video.num_instances != 1:
            print(f"clip {k}: {video.num_instances} shapes, skipped")
            continue
        grey = to_grey(video.rgb)
        table[f"{k}: {video.caption}"] = {
            c.name: round(instance_color_accuracy(colorize(grey, caption_with_colors(video, [c.name])), video.masks,
                                                  [c.name]), 2) for c in SHAPE_PALETTE}
    return table


if __name__ == "__main__":
    main()
