"""Where a model's colours go on two-shape videos: its own word, the other shape's, a blend, or elsewhere.

For every (shape, frame) of the held-out two-shape videos, the mean predicted (a, b) inside the
shape is classified to the nearest palette colour (as the instance accuracy does) and counted as

* **own**: the colour the caption gives this shape (what the accuracy counts);
* **other**: the colour the caption gives the *other* shape (bound to the wrong shape);
* **blend**: the palette colour nearest the midpoint of the two named colours (a mix of both);
* **elsewhere**: anything else (e.g. a palette neighbour of the right colour).

A model that reads the colour words but not which shape they belong to puts most of its misses
in *other* and *blend*; one whose colours are just inaccurate puts them *elsewhere*.

With ``--position`` it also prints two continuous measures of the binding, on the segment from a
shape's own colour (0) to the other shape's (1) in the (a, b) plane:

* **position**: where the shape's mean predicted (a, b) lies (0 = bound, 0.5 = an even blend);
* **swap reach**: how far along that segment the shape moves when the caption's two colour words
  are exchanged (1 = the swap is followed fully, 0 = the colour ignores the words' order).

With ``--steps 1 --guidance 1`` these describe the model's one-step prediction x̂₀ from pure
noise, where each shape's colour is decided; they need no sampling and separate models whose
sampled accuracies overlap.

    python benchmarks/binding_errors.py --model lc4/assets/demo-model --videos 24
    python benchmarks/binding_errors.py --model lc4/assets/demo-model --position --steps 1 --guidance 1
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch

from lc4.color import to_grey
from lc4.data.synthetic import SHAPE_PALETTE, swap_caption_colors
from lc4.evaluation.synthetic import held_out_video, pipeline_colorizer
from lc4.metrics import instance_color_accuracy
from lc4.metrics.instance import instance_mean_ab

CATEGORIES = ("own", "other", "blend", "elsewhere")


def classify(predicted: str | None, own: str, other: str, blend: str) -> str | None:
    """One (shape, frame) outcome; None when the shape is too small in that frame to score."""
    if predicted is None:
        return None
    for name, colour in (("own", own), ("other", other), ("blend", blend)):
        if predicted == colour:
            return name
    return "elsewhere"


def palette_ab(name: str) -> np.ndarray:
    """CIELAB (a, b) of a shape palette colour."""
    return np.asarray(SHAPE_PALETTE.lab, dtype=np.float64)[list(SHAPE_PALETTE.names).index(name), 1:]


def blend_colour(a: str, b: str) -> str:
    """The palette colour nearest the (a, b) midpoint of two palette colours."""
    ab = np.asarray(SHAPE_PALETTE.lab, dtype=np.float64)[:, 1:]
    mid = (palette_ab(a) + palette_ab(b)) / 2
    return SHAPE_PALETTE.names[int(np.linalg.norm(ab - mid, axis=-1).argmin())]


def segment_position(point: np.ndarray, own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Projection of (a, b) points `(..., 2)` on the segment own (0) → other (1), unclipped."""
    d = other - own
    return (point - own) @ d / (d @ d)


def binding_positions(colorize, videos: int) -> dict[str, float]:
    """Mean position and swap reach (module docstring) over the two-shape, two-colour videos."""
    position, reach = [], []
    for k in range(videos):
        video = held_out_video(k)
        if video.num_instances != 2 or video.instance_colors[0] == video.instance_colors[1]:
            continue
        grey = to_grey(video.rgb)
        swapped, _ = swap_caption_colors(video, 0, 1)
        (m0, ok0), (m1, ok1) = (instance_mean_ab(colorize(grey, c), video.masks) for c in (video.caption, swapped))
        a, b = (palette_ab(c) for c in video.instance_colors)
        for i, (own, other) in enumerate(((a, b), (b, a))):
            ok = ok0[:, i] & ok1[:, i]
            before = segment_position(m0[ok, i], own, other)
            position.extend(before)
            reach.extend(segment_position(m1[ok, i], own, other) - before)
    return {"position": float(np.mean(position)), "swap_reach": float(np.mean(reach)), "shape_frames": len(position)}


def binding_errors(colorize, videos: int) -> Counter:
    """Counts of the four outcomes over the two-shape videos among held-out videos 0..videos-1."""
    counts: Counter = Counter()
    for k in range(videos):
        video = held_out_video(k)
        if video.num_instances != 2:
            continue
        pred = colorize(to_grey(video.rgb), video.caption)
        result = instance_color_accuracy(pred, video.masks, video.instance_colors, return_details=True)
        a, b = video.instance_colors
        blend = blend_colour(a, b)
        for score, (own, other) in zip(result.instances, ((a, b), (b, a))):
            for predicted in score.predicted:
                outcome = classify(predicted, own, other, blend)
                if outcome is not None:
                    counts[outcome] += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--videos", type=int, default=24, help="held-out videos 0..N-1 (only two-shape ones count)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--position", action="store_true", help="also the binding position and swap reach")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from lc4.pipeline import LC4Pipeline

    sample = pipeline_colorizer(LC4Pipeline.from_pretrained(args.model), steps=args.steps, guidance=args.guidance)
    done: dict[tuple[bytes, str], np.ndarray] = {}  # --position colorizes each original caption again

    def colorize(grey: np.ndarray, caption: str) -> np.ndarray:
        key = (grey.tobytes(), caption)
        if key not in done:
            done[key] = sample(grey, caption)
        return done[key]

    counts = binding_errors(colorize, args.videos)
    total = sum(counts.values())
    report = {"model": args.model, "pairs": total, **{c: counts[c] / total if total else float("nan") for c in CATEGORIES}}
    print(" | ".join(f"{c} {report[c]:.2f}" for c in CATEGORIES), f"({total} shape-frames)")
    if args.position:
        report.update(binding_positions(colorize, args.videos))
        print(f"position {report['position']:.2f} (0 own, 1 other) | swap reach {report['swap_reach']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
