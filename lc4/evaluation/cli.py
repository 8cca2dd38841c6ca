"""Command-line glue for ``lc4 evaluate`` (registered by ``lc4.cli`` through :func:`add_parser`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def parse_resolution(text: str) -> int | None:
    """argparse type for an evaluation resolution: pixels, or 'native' / 'none' / 0 for the source size."""
    if text.lower() in {"none", "native", "0"}:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be a positive integer or 'native'; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"resolution must be a positive integer or 'native'; got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand; its handler is :func:`run` (``set_defaults(func=run)``)."""
    p = subparsers.add_parser(
        "evaluate",
        help="score colourised videos against ground truth (Color., PSNR, SSIM, LPIPS, FVD, CDC)",
        description=(
            "Match videos by name in --pred and --gt (DAVIS JPEGImages/480p/<seq>, <seq>/ frame folders or "
            "<seq>.mp4), resize both to the evaluation resolution without crop, and write a JSON + CSV + "
            "Markdown report in the column order of the L-C4 paper."
        ),
    )
    p.add_argument("--pred", required=True, help="folder of colourised videos")
    p.add_argument("--gt", required=True, help="folder of ground-truth videos")
    p.add_argument("--output", required=True, help="report prefix (writes PREFIX.json/.csv/.md) or an existing folder")
    p.add_argument("--prompts", default=None, help="JSON map or CSV name,prompt of text prompts (for clip_score)")
    p.add_argument("--resolution", type=parse_resolution, default=256, help="square evaluation size, or 'native' (default 256)")
    p.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="metrics (space or comma separated): colorfulness psnr ssim lpips fvd cdc fid clip_score warp_error, or all "
        "(default: the paper's six, plus clip_score when --prompts is given)",
    )
    p.add_argument("--sequences", default=None, help="restrict to davis30, videvo20, or a text file of names")
    p.add_argument("--strict", action="store_true", help="fail when a listed video is missing instead of skipping it")
    p.add_argument("--weights-dir", default=None, help="folder with metric weights (LPIPS, I3D, Inception files)")
    p.add_argument("--clip-model", default=None, help="local transformers CLIP folder for clip_score")
    p.add_argument("--colorfulness-variant", choices=("signed", "abs"), default="signed", help="opponent channels (default signed)")
    p.add_argument("--fvd-clip-frames", type=int, default=16, help="frames per FVD clip (default 16)")
    p.add_argument("--device", default=None, help="torch device for the network metrics (default cuda if available)")
    p.add_argument("--name", default=None, help="method name in the report (default: the --pred folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the evaluation, save the report, print the Markdown summary; 0 on success.

    Bad input raises ValueError / FileNotFoundError with a one-line message.
    """
    from .harness import evaluate

    for flag, path in (("--pred", args.pred), ("--gt", args.gt)):
        if not Path(path).expanduser().is_dir():
            raise FileNotFoundError(f"{flag} folder not found: {path}")
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = evaluate(
        args.pred,
        args.gt,
        prompts=args.prompts,
        resolution=args.resolution,
        metrics=args.metrics,
        sequences=args.sequences,
        strict=args.strict,
        weights_dir=args.weights_dir,
        clip_model=args.clip_model,
        colorfulness_variant=args.colorfulness_variant,
        device=args.device,
        fvd_clip_frames=args.fvd_clip_frames,
        name=args.name,
        log=log,
    )
    paths = report.save(args.output)
    print(report.to_markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
