"""``lc4 synth``: write the procedural language-colorization benchmark to a folder.

Glue only: :func:`add_parser` registers the subcommand on an ``argparse`` subparsers object and
:func:`run` calls :func:`lc4.data.synthetic.write_dataset`, turning bad arguments into a
one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def _shape_range(text: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1-3"`` -> (1, 3)."""
    try:
        parts = [int(p) for p in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth`` and return its parser (``func`` default set to :func:`run`)."""
    p = subparsers.add_parser(
        "synth",
        help="write the synthetic isoluminant-shapes benchmark (videos, grey, masks, manifest)",
        description=(
            "Generate moving isoluminant shapes whose colours only the caption names. Writes "
            "videos/, grey/, masks/, manifest.csv (video,caption), meta.jsonl and palette.json."
        ),
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create")
    p.add_argument("--num-videos", type=int, required=True, help="number of videos")
    p.add_argument("--seed", type=int, default=0, help="seed of the first video (video k uses seed+k; default 0)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default 8, or 256 with --long)")
    p.add_argument("--long", action="store_true", help="long-video mode: slow motion, shapes leave and return")
    p.add_argument("--shapes", type=_shape_range, default=(1, 3), metavar="N|MIN-MAX",
                   help="shapes per video (default 1-3)")
    p.add_argument("--colors-named", choices=("all", "some", "none"), default="all",
                   help="which colours the captions name: all; some (the free-colour split: some shapes' colours, "
                   "sometimes the background's, are left to the model); none")
    p.add_argument("--free-fraction", type=float, default=0.0,
                   help="mix: this share of the videos from the free-colour split, the rest named (default 0)")
    p.add_argument("--format", choices=("mp4", "png"), default="mp4", help="mp4 (H.264 4:4:4) or png frame folders")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate written to MP4 files (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the dataset; 0 on success, 2 with a one-line message on bad input."""
    from lc4.data.synthetic import write_dataset

    try:
        out = write_dataset(
            args.out_dir,
            args.num_videos,
            seed=args.seed,
            size=args.size,
            num_frames=args.frames,
            format=args.format,
            num_shapes=tuple(args.shapes),
            long=args.long,
            fps=args.fps,
            free_fraction=args.free_fraction,
            colors_named=args.colors_named,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"lc4 synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_videos} videos to {out} (manifest: {out / 'manifest.csv'})")
    return 0
