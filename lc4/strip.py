"""Side-by-side picture strips: one row per video (e.g. grey | ours | ground truth), sampled frames as columns.

`python -m lc4.strip GREY OURS GT --output strip.png [--frames 6] [--labels grey ours "ground truth"]`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw


def make_strip(videos: Sequence[np.ndarray], labels: Sequence[str] | None = None, frames: int = 6,
               height: int = 96) -> Image.Image:
    """Grid image: row r shows `frames` evenly spaced frames of videos[r] (uint8 (T, H, W, 3)), resized to `height`."""
    rows = []
    label_w = 110 if labels else 0
    for r, video in enumerate(videos):
        idx = np.linspace(0, len(video) - 1, min(frames, len(video))).round().astype(int)
        tiles = []
        for i in idx:
            im = Image.fromarray(video[i])
            tiles.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR))
        row = Image.new("RGB", (label_w + sum(t.width for t in tiles) + 2 * len(tiles), height + 2), "white")
        x = label_w
        for t in tiles:
            row.paste(t, (x, 1))
            x += t.width + 2
        if labels:
            ImageDraw.Draw(row).text((4, height // 2 - 6), labels[r], fill="black")
        rows.append(row)
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height
    return out


def main(argv: list[str] | None = None) -> int:
    from .io import atomic_output, read_frames

    p = argparse.ArgumentParser(prog="python -m lc4.strip", description=__doc__)
    p.add_argument("videos", nargs="+", help="videos / frame folders, one row each")
    p.add_argument("--output", required=True)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--labels", nargs="*", default=None)
    args = p.parse_args(argv)
    labels = args.labels or [Path(v).stem if len(args.videos) != 3 else n
                             for v, n in zip(args.videos, ["grey", "ours", "ground truth"])]
    try:
        strip = make_strip([read_frames(v) for v in args.videos], labels, args.frames)
        with atomic_output(args.output, overwrite=True) as tmp:
            strip.save(tmp, format="PNG")
    except (ValueError, OSError) as exc:
        print(f"lc4: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
