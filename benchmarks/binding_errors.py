"""Where a model's colours go on two-shape videos: its own word, the other shape's, a blend, or elsewhere.

For every (shape, frame) of the held-out two-shape videos, the mean predicted (a, b) inside the
shape is classified to the nearest palette colour (as the instance accuracy does) and counted as

* **own**: the colour the caption gives this shape (what the accuracy counts);
* **other**: the colour the caption gives the *other* shape (bound to the wrong shape);
* **blend**: the palette colour nearest the midpoint of the two named colours (a mix of both);
* **elsewhere**: anything else (e.g. a palette neighbour of the right colour).

A model that reads the colour words but not which shape they belong to puts most of its misses
in *other* and *blend*; one whose colours are just inaccurate puts them *elsewhere*.

    python benchmarks/binding_errors.py --model lc4/assets/demo-model --videos 24
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch

from lc4.color import to_grey
from lc4.data.synthetic import SHAPE_PALETTE
from lc4.evaluation.synthetic import held_out_video, pipeline_colorizer
from lc4.metrics import instance_color_accuracy

CATEGORIES = ("own", "other", "blend", "elsewhere")


def classify(predicted: str | None, own: str, other: str, blend: str) -> str | None:
    """One (shape, frame) outcome; None when the shape is too small in that frame to score."""
    if predicted is None:
        return None
    for name, colour in (("own", own), ("other", other), ("blend", blend)):
        if predicted == colour:
            return name
    return "elsewhere"


def blend_colour(a: str, b: str) -> str:
    """The palette colour nearest the (a, b) midpoint of two palette colours."""
    names, ab = list(SHAPE_PALETTE.names), np.asarray(SHAPE_PALETTE.lab, dtype=np.float64)[:, 1:]
    mid = (ab[names.index(a)] + ab[names.index(b)]) / 2
    return names[int(np.linalg.norm(ab - mid, axis=-1).argmin())]


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
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from lc4.pipeline import LC4Pipeline

    counts = binding_errors(pipeline_colorizer(LC4Pipeline.from_pretrained(args.model), steps=args.steps), args.videos)
    total = sum(counts.values())
    report = {"model": args.model, "pairs": total, **{c: counts[c] / total if total else float("nan") for c in CATEGORIES}}
    print(" | ".join(f"{c} {report[c]:.2f}" for c in CATEGORIES), f"({total} shape-frames)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
