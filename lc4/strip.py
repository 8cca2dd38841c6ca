"""Side-by-side picture strips: one row per video (e.g. grey | ours | ground truth), sampled frames as columns.

`python -m lc4.strip GREY OURS GT --output strip.png [--frames 6] [--labels grey ours "ground truth"]`

Only the sampled frames are decoded, so strips of long films are cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 110
GAP = 2


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """`count` (at most `num_frames`) frame indices spread evenly from the first to the last frame."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one column, got {num_frames} frames and {count} columns")
    return np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int)


def make_strip(videos: Sequence[np.ndarray], labels: Sequence[str] | None = None, frames: int = 6,
               height: int = 96) -> Image.Image:
    """Grid image: row r shows `frames` evenly spaced frames of videos[r] (uint8 (T, H, W, 3)), resized to `height`."""
    if not videos:
        raise ValueError("make_strip needs at least one video")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"got {len(labels)} labels for {len(videos)} videos; give one label per video")
    if height < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    rows = []
    label_w = LABEL_WIDTH if labels else 0
    for r, video in enumerate(videos):
        tiles = []
        for i in sample_indices(len(video), frames):
            im = Image.fromarray(np.ascontiguousarray(video[i]))
            tiles.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.BILINEAR))
        row = Image.new("RGB", (label_w + sum(t.width for t in tiles) + GAP * len(tiles), height + GAP), "white")
        x = label_w
        for t in tiles:
            row.paste(t, (x, GAP // 2))
            x += t.width + GAP
        if labels:
            ImageDraw.Draw(row).text((4, height // 2 - 6), labels[r], fill="black")
        rows.append(row)
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height
    return out


def read_sampled(path: str | Path, frames: int) -> np.ndarray:
    """The `frames` evenly spaced frames of a video file, frame folder or image (only those are kept)."""
    from .io import probe, read_frames

    return read_frames(path, sample_indices(probe(path).num_frames, frames))


def main(argv: list[str] | None = None) -> int:
    from .io import atomic_output

    p = argparse.ArgumentParser(prog="python -m lc4.strip", description=__doc__)
    p.add_argument("videos", nargs="+", help="videos / frame folders, one row each")
    p.add_argument("--output", required=True)
    p.add_argument("--frames", type=int, default=6, help="columns (evenly spaced frames)")
    p.add_argument("--height", type=int, default=96, help="row height in pixels")
    p.add_argument("--labels", nargs="*", default=None, help="one per video (default: grey/ours/ground truth for 3)")
    args = p.parse_args(argv)
    labels = args.labels or [Path(v).stem if len(args.videos) != 3 else n
                             for v, n in zip(args.videos, ["grey", "ours", "ground truth"])]
    try:
        if args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        if len(labels) != len(args.videos):
            raise ValueError(f"got {len(labels)} labels for {len(args.videos)} videos; give one label per video")
        strip = make_strip([read_sampled(v, args.frames) for v in args.videos], labels, args.frames, args.height)
        with atomic_output(args.output, overwrite=True, inputs=args.videos) as tmp:
            strip.save(tmp, format="PNG")
    except (ValueError, OSError) as exc:
        print(f"lc4: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
