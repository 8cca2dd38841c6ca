"""Colour keyframes on long free-colour videos (issue 24): does a keyframe colour the frames far from it?

For each of --videos held-out long videos (T = --frames, default 128) whose captions name no colour
(`held_out_video(k, T, long=True, colors_named="none")`), the model colorizes the grey video with
keyframes taken from the ground truth: **off**, **1** (frame 0) and **2** (frames 0 and T - 1 with
`--second last`, the default, or 0 and T/2 with `--second middle`), each with CCF (`--ccf-fusion`,
default exact, the paper's) and without (fusion none, clip by clip). DDIM `--steps` (20), guidance 4.5.

Scores (instance colour accuracy, `lc4.metrics.instance_color_accuracy` against
`video.instance_colors`, chance 1/8; pooled over the (shape, frame) pairs of all videos):

* **far**: frames T/2 ... T-1 (64-127 for T = 128), the keyframes themselves left out;
* **by distance** from the nearest keyframe, in bins 1-7, 8-15, 16-31, 32-63, 64+ (for the rows
  with keyframes off, the distance from frame 0, so they line up with the one-keyframe rows);
* the background's accuracy on the far frames (its own palette), and the keyframes' own
  accuracy (held frames: the VAE's round trip);
* **ΔE by distance**: the mean CIELAB (a, b) distance between each shape's mean colour and its
  ground truth's, per distance bin: a continuous measure of how fast a keyframe's pull fades,
  which accuracy (a threshold) hides.

`--influence` measures why a keyframe does or does not travel: one denoising step of one clip
(frames 0 ... N^f - 1 of the first video, CCF exact) with frame 0's latent set to its keyframe's at
the step's noise level, against the same step with frame 0 left alone; it prints, per timestep, how
much each frame's noise prediction moves (relative L2). Frames the temporal layers do not link to
frame 0 do not move at all.

Prints a table and the JSON (also written to --json); --picture writes a strip of the first video:
the keyframe, then frames 1-6 and the second half: ours (one keyframe) | keyframes off | ground truth.

    python benchmarks/keyframes.py --model runs/video_model/export --videos 16
    python benchmarks/keyframes.py --videos 1 --frames 32 --steps 4 --picture /tmp/keyframes.png   # smoke run
    python benchmarks/keyframes.py --influence                     # how far one step carries a keyframe
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

BIN_STARTS = (1, 8, 16, 32, 64)


def bin_names(starts=BIN_STARTS) -> list[str]:
    return [f"{a}-{b - 1}" for a, b in zip(starts, starts[1:])] + [f"{starts[-1]}+"]


def keyframe_frames(count: int, num_frames: int, second: str) -> list[int]:
    if count == 0:
        return []
    if count == 1:
        return [0]
    return [0, num_frames - 1 if second == "last" else num_frames // 2]


def distances(num_frames: int, keys: list[int]) -> np.ndarray:
    """Per frame, the distance to the nearest keyframe (to frame 0 when there is none)."""
    keys = keys or [0]
    t = np.arange(num_frames)
    return np.min(np.abs(t[:, None] - np.array(keys)[None]), axis=1)


def per_frame(pred: np.ndarray, masks: np.ndarray, colors: list[str], palette=None) -> tuple[np.ndarray, np.ndarray]:
    """(correct, scored) counts per frame over the instances: (T,), (T,)."""
    from lc4.metrics import instance_color_accuracy

    result = instance_color_accuracy(pred, masks, colors, palette, return_details=True)
    correct, scored = np.zeros(len(pred), int), np.zeros(len(pred), int)
    for score in result.instances:
        for t, name in enumerate(score.predicted):
            if name is not None:
                scored[t] += 1
                correct[t] += name == score.expected
    return correct, scored


class Tally:
    """Correct / scored counts pooled over videos: far frames, distance bins, background, keyframes."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, name: str, correct: np.ndarray, scored: np.ndarray, frames: np.ndarray) -> None:
        c = self.counts.setdefault(name, [0, 0])
        c[0] += correct[frames].sum().item()  # (a sum of ΔE for the "dE" entries: their "accuracy" is the mean)
        c[1] += int(scored[frames].sum())

    def accuracy(self, name: str) -> float | None:
        c, n = self.counts.get(name, (0, 0))
        return c / n if n else None

    def as_dict(self) -> dict:
        return {name: {"accuracy": self.accuracy(name), "correct": c, "scored": n} if not name.startswith("dE ")
                else {"mean_delta_e_ab": self.accuracy(name), "shapes": n} for name, (c, n) in self.counts.items()}


def shape_delta_e(pred: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ΔE_ab between predicted and true mean shape colours, shapes scored) per frame: (T,), (T,)."""
    from lc4.metrics.instance import instance_mean_ab

    mean_p, valid = instance_mean_ab(pred, masks)
    mean_t, valid_t = instance_mean_ab(truth, masks)
    ok = valid & valid_t
    delta = np.where(ok, np.linalg.norm(np.nan_to_num(mean_p) - np.nan_to_num(mean_t), axis=-1), 0.0)
    return delta.sum(axis=1), ok.sum(axis=1)


def score(tally: Tally, pred: np.ndarray, video, keys: list[int], far_start: int, starts=BIN_STARTS) -> None:
    from lc4.data.synthetic import BACKGROUND_PALETTE

    t = len(pred)
    correct, scored = per_frame(pred, video.masks, video.instance_colors)
    free = np.ones(t, bool)
    free[keys] = False
    frames = np.arange(t)
    tally.add("far", correct, scored, frames[(frames >= far_start) & free])
    tally.add("all", correct, scored, frames[free])
    if keys:
        tally.add("keyframes", correct, scored, np.array(keys))
    dist = distances(t, keys)
    edges = [*starts, np.inf]
    delta, shapes = shape_delta_e(pred, video.rgb, video.masks)
    for name, lo, hi in zip(bin_names(starts), edges, edges[1:]):
        tally.add(f"d {name}", correct, scored, frames[(dist >= lo) & (dist < hi) & free])
        tally.add(f"dE {name}", delta, shapes, frames[(dist >= lo) & (dist < hi) & free])
    background = ~video.masks.any(axis=1, keepdims=True)
    bc, bs = per_frame(pred, background, [video.background_color], BACKGROUND_PALETTE)
    tally.add("background far", bc, bs, frames[(frames >= far_start) & free])


def fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:5.2f}"


def table(results: dict, args: argparse.Namespace) -> str:
    names = bin_names()
    tg = "" if args.temporal_guidance is None else f" (temporal {args.temporal_guidance})"
    head = (f"{'setting':<24} {'far':>5} {'bg far':>6} {'all':>5} {'keys':>5} | by distance from the nearest "
            f"keyframe: " + " ".join(f"{n:>6}" for n in names))
    lines = [f"keyframes on {args.videos} held-out long free-colour videos (colors_named='none'), T = {args.frames}, "
             f"far = frames {args.frames // 2}-{args.frames - 1} (keyframes left out), DDIM {args.steps}, "
             f"guidance {args.guidance}{tg}, seed {args.seed}, keyframes held {args.hold}, {args.window} windows; "
             f"2 keyframes = frames "
             f"{keyframe_frames(2, args.frames, args.second)}; instance accuracy, chance 0.125", head]
    for name, row in results["settings"].items():
        acc = {k: v.get("accuracy", v.get("mean_delta_e_ab")) for k, v in row["scores"].items()}
        lines.append(f"{name:<24} {fmt(acc.get('far'))} {fmt(acc.get('background far')):>6} {fmt(acc.get('all'))} "
                     f"{fmt(acc.get('keyframes'))} | {'':>39}"
                     + " ".join(f"{fmt(acc.get('d ' + n)):>6}" for n in names))
    lines.append(f"{'':<24} {'':>5} {'':>6} {'':>5} {'':>5} | {'mean shape ΔE_ab to the ground truth:':>39}"
                 + " ".join(f"{n:>6}" for n in names))
    for name, row in results["settings"].items():
        acc = {k: v.get("mean_delta_e_ab") for k, v in row["scores"].items()}
        lines.append(f"{name:<24} {'':>5} {'':>6} {'':>5} {'':>5} | {'':>39}"
                     + " ".join(f"{'  -  ' if acc.get('dE ' + n) is None else format(acc['dE ' + n], '5.1f'):>6}"
                                for n in names))
    return "\n".join(lines)


@torch.no_grad()
def influence(pipe, args: argparse.Namespace, device: str) -> dict:
    """Per timestep, the relative change of each frame's noise prediction in one clip when frame 0 is held."""
    from lc4 import ccf
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import held_out_video
    from lc4.keyframes import keyframe_latents
    from lc4.pipeline import working_grey
    from lc4.prompts import parse_prompt_schedule
    from lc4.sampling import fused_noise_prediction, guided

    n = pipe.model.config.num_frames
    video = held_out_video(args.first, n, args.size, long=True, colors_named="none")
    grey = working_grey(to_grey(video.rgb), (args.size, args.size))
    schedule = parse_prompt_schedule(video.caption, n)
    state = torch.device(device)
    cond = pipe._conditioning(grey, schedule, "", args.guidance, 8, state)
    _, clean = keyframe_latents(pipe.model, {0: video.rgb[0]}, grey, args.luminance)
    layout = ccf.make_layout(n, n)
    sched = pipe.scheduler
    sched.set_timesteps(args.steps, device=state)
    gen = torch.Generator().manual_seed(args.seed)
    shape = (n, *clean.shape[1:])
    x = torch.randn(shape, generator=gen).to(state) * sched.init_noise_sigma
    noise = torch.randn(clean.shape, generator=gen).to(state)
    rows = {}
    for t in sched.timesteps[:: max(1, len(sched.timesteps) // 5)]:
        held = x.clone()
        held[:1] = sched.add_noise(clean.to(state), noise, t.reshape(1))
        eps = [guided(fused_noise_prediction(pipe.model, sched.scale_model_input(z, t), t, cond, layout, exact=True),
                      args.guidance) for z in (x, held)]
        change = ((eps[1] - eps[0]).flatten(1).norm(dim=1) / eps[0].flatten(1).norm(dim=1)).tolist()
        rows[int(t)] = [round(c, 5) for c in change]
    return {"video": args.first, "clip_frames": n, "relative_change_by_frame": rows}


def main() -> None:
    from lc4.color import to_grey
    from lc4.evaluation.synthetic import held_out_video
    from lc4.pipeline import LC4Pipeline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model", help="an L-C4 model folder")
    p.add_argument("--videos", type=int, default=8, help="held-out long videos (seeds 900 000 + --first ...)")
    p.add_argument("--first", type=int, default=0, help="first held-out video")
    p.add_argument("--frames", type=int, default=128, help="T, frames per video")
    p.add_argument("--size", type=int, default=64, help="frame size (the model's resolution)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ccf-fusion", default="exact", choices=["exact", "bounded", "auto"],
                   help="the fusion mode of the CCF rows (the others run clip by clip: fusion none)")
    p.add_argument("--window", default="skip", choices=["skip", "sliding"],
                   help="the CCF rows' clip layout: the paper's skip windows, or sliding windows (stride N/2)")
    p.add_argument("--keyframes", type=int, nargs="+", default=[0, 1, 2], choices=[0, 1, 2],
                   help="keyframe counts to run (0 = off)")
    p.add_argument("--second", default="last", choices=["last", "middle"],
                   help="where the second keyframe of the 2-keyframe rows is: frame T-1 or T/2")
    p.add_argument("--no-ccf-rows", action="store_true", help="skip the rows without CCF")
    p.add_argument("--strength", type=float, default=1.0, help="keyframe_strength")
    p.add_argument("--luminance", default="video", choices=["video", "keyframe"], help="keyframe_luminance")
    p.add_argument("--hold", default="noised", choices=["noised", "clean"],
                   help="keyframe_hold: at the step's noise level, or clean at timestep 0")
    p.add_argument("--temporal-guidance", type=float, default=None,
                   help="LC4Pipeline temporal_guidance: the temporal layers' term at its own scale")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--picture", default=None, help="write a strip of the first video here (PNG)")
    p.add_argument("--influence", action="store_true",
                   help="only measure how one denoising step carries a held frame 0 to the other frames of its clip")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames < 2 or args.videos < 1:
        p.error("need --frames >= 2 and --videos >= 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = LC4Pipeline.from_pretrained(args.model).to(device)
    if args.influence:
        result = influence(pipe, args, device)
        print(f"one denoising step of frames 0-{result['clip_frames'] - 1} (one clip), frame 0 held at the step's "
              "noise level: relative change of each frame's noise prediction")
        for t, change in result["relative_change_by_frame"].items():
            print(f"t = {t:4d}: " + " ".join(f"{c:8.5f}" for c in change))
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return
    fusions = {"CCF": args.ccf_fusion} | ({} if args.no_ccf_rows else {"no CCF": "none"})
    settings = {f"{label}, {n} keyframe{'s' if n != 1 else ''}" if n else f"{label}, keyframes off": (fusion, n)
                for label, fusion in fusions.items() for n in sorted(args.keyframes)}
    tallies = {name: Tally() for name in settings}
    seconds = {name: 0.0 for name in settings}
    picture: dict[str, np.ndarray] = {}
    t_start = time.time()
    for k in range(args.first, args.first + args.videos):
        video = held_out_video(k, args.frames, args.size, long=True, colors_named="none")
        grey = to_grey(video.rgb)
        for name, (fusion, count) in settings.items():
            keys = keyframe_frames(count, args.frames, args.second)
            t0 = time.time()
            pred = pipe(grey, video.caption, num_inference_steps=args.steps, guidance_scale=args.guidance,
                        seed=args.seed, resolution=args.size, progress=False, fusion=fusion, window=args.window,
                        keyframes={f: video.rgb[f] for f in keys} or None, keyframe_strength=args.strength,
                        keyframe_luminance=args.luminance, keyframe_hold=args.hold,
                        temporal_guidance=args.temporal_guidance).frames
            seconds[name] += time.time() - t0
            score(tallies[name], pred, video, keys, args.frames // 2)
            if k == args.first and fusion == args.ccf_fusion and count in (0, 1):
                picture[name] = pred
        print(f"video {k}: {video.caption!r} {video.instance_colors} on {video.background_color} "
              f"({time.time() - t_start:.0f} s)", flush=True)
    results = {
        "model": args.model, "videos": args.videos, "first": args.first, "frames": args.frames, "size": args.size,
        "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "ccf_fusion": args.ccf_fusion,
        "window": args.window, "second_keyframe": keyframe_frames(2, args.frames, args.second)[1],
        "strength": args.strength,
        "luminance": args.luminance, "hold": args.hold, "temporal_guidance": args.temporal_guidance,
        "far_frames": [args.frames // 2, args.frames - 1], "bins": bin_names(),
        "settings": {name: {"fusion": settings[name][0], "keyframes": keyframe_frames(settings[name][1], args.frames,
                                                                                      args.second),
                            "seconds": round(seconds[name], 1), "scores": tallies[name].as_dict()}
                     for name in settings},
        "device": device, "seconds": round(time.time() - t_start, 1),
    }
    print(table(results, args))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.picture:
        write_picture(args, picture)


def write_picture(args: argparse.Namespace, picture: dict[str, np.ndarray]) -> None:
    from lc4.evaluation.synthetic import held_out_video
    from lc4.strip import make_strip, save_strip

    video = held_out_video(args.first, args.frames, args.size, long=True, colors_named="none")
    near, far = slice(1, 7), slice(args.frames // 2, args.frames)
    rows, labels = [video.rgb[:1]], ["keyframe (frame 0)"]
    one = next((v for n, v in picture.items() if n.endswith("1 keyframe")), None)
    off = next((v for n, v in picture.items() if n.endswith("keyframes off")), None)
    for part in (near, far):  # where the keyframe's colour holds and where it has faded
        if one is not None:
            rows.append(one[part])
            labels.append(f"ours {part.start}-{part.stop - 1}")
        if off is not None:
            rows.append(off[part])
            labels.append(f"keyframes off {part.start}-{part.stop - 1}")
        rows.append(video.rgb[part])
        labels.append(f"truth {part.start}-{part.stop - 1}")
    out = save_strip(make_strip(rows, labels, frames=6, height=96), args.picture)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
