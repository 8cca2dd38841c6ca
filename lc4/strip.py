"""Side-by-side picture strips: one row per video (e.g. grey | ours | ground truth), sampled frames as columns.

`python -m lc4.strip GREY OURS GT --output strip.png [--frames 6] [--labels grey ours "ground truth"] [--overwrite]`

Only the sampled frames are decoded, so strips of long films are cheap. An existing output is
replaced only when it is a strip lc4 wrote (a PNG tagged ``Software: lc4.strip``), or with
``--overwrite``; an input is never replaced.
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
#: The PNG ``Software`` text chunk of every strip lc4 saves: how a strip is told from other files.
SOFTWARE = "lc4.strip"


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


def is_strip(path: str | Path) -> bool:
    """Whether ``path`` is a strip lc4 saved (a regular PNG file tagged ``Software: lc4.strip``)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == SOFTWARE
    except Exception:  # not an image, truncated, too large: not one of ours
        return False


def check_strip_output(path: str | Path, overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """Validate a strip's output path up front: ``FileExistsError`` for an existing file that is not a strip
    lc4 wrote (unless ``overwrite``), ``ValueError`` for an input or a folder (see :func:`lc4.io.check_output_path`)."""
    from .io import check_output_path

    out = check_output_path(path, overwrite=True, inputs=inputs)  # an input or a folder: ValueError
    if (out.exists() or out.is_symlink()) and not overwrite and not is_strip(out):
        raise FileExistsError(f"{out}: already exists and is not a strip lc4 wrote; pass --overwrite "
                              "(overwrite=True) to replace it")
    return out


def save_strip(strip: Image.Image, path: str | Path, overwrite: bool = False,
               inputs: Sequence[str | Path] = ()) -> Path:
    """Save ``strip`` as a PNG (atomically, tagged as lc4's); an existing file is replaced only when it is a
    strip lc4 wrote, or with ``overwrite`` (:func:`check_strip_output`)."""
    from PIL.PngImagePlugin import PngInfo

    from .io import atomic_output

    out = check_strip_output(path, overwrite, inputs)
    info = PngInfo()
    info.add_text("Software", SOFTWARE)
    with atomic_output(out, overwrite=overwrite or is_strip(out), inputs=inputs) as tmp:
        strip.save(tmp, format="PNG", pnginfo=info)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lc4.strip", description=__doc__)
    p.add_argument("videos", nargs="+", help="videos / frame folders, one row each")
    p.add_argument("--output", required=True)
    p.add_argument("--frames", type=int, default=6, help="columns (evenly spaced frames)")
    p.add_argument("--height", type=int, default=96, help="row height in pixels")
    p.add_argument("--labels", nargs="*", default=None, help="one per video (default: grey/ours/ground truth for 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --output file even if it is not a strip lc4 wrote (never an input)")
    args = p.parse_args(argv)
    labels = args.labels or [Path(v).stem if len(args.videos) != 3 else n
                             for v, n in zip(args.videos, ["grey", "ours", "ground truth"])]
    try:
        if args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        if len(labels) != len(args.videos):
            raise ValueError(f"got {len(labels)} labels for {len(args.videos)} videos; give one label per video")
        check_strip_output(args.output, args.overwrite, args.videos)  # before any decoding
        strip = make_strip([read_sampled(v, args.frames) for v in args.videos], labels, args.frames, args.height)
        save_strip(strip, args.output, args.overwrite, args.videos)
    except (ValueError, OSError) as exc:
        print(f"lc4: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
