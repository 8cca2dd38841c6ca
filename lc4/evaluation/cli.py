"""Command-line glue for ``lc4 evaluate`` (registered by ``lc4.cli`` through :func:`add_parser`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .report import report_paths

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


def _is_lc4_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"name", "metrics", "per_video", "dataset"} <= data.keys()


def check_report_output(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> list[Path]:
    """Refuse, before any work, a report that would replace an input or a file lc4 did not write.

    Reports are rewritten on every run (no --overwrite), so an existing ``PREFIX.json/.csv/.md``
    is replaced only when ``PREFIX.json`` is an lc4 report; nothing is written into the --pred
    or --gt folders, and never over an input (the same rules as ``lc4.io.check_output_path``).
    """
    from lc4.io import check_output_path

    paths = report_paths(output)
    given = {flag: Path(p).expanduser() for flag, p in inputs.items() if p is not None and Path(p).expanduser().exists()}
    for flag, src in given.items():
        if src.is_dir() and any(src.resolve() == p.resolve().parent or src.resolve() in p.resolve().parents
                                for p in paths):
            raise ValueError(f"--output {output}: the report would be written inside the {flag} folder {src}; "
                             "inputs are never written to (choose another --output)")
    for path in paths:
        check_output_path(path, overwrite=True, inputs=list(given.values()))
    existing = [p for p in paths if p.exists()]
    if existing and not _is_lc4_report(paths[0]):
        raise ValueError(f"--output {output}: {existing[0]} exists and {paths[0].name} is not an lc4 report; lc4 only "
                         "replaces its own reports (choose another --output)")
    return paths


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
    check_report_output(args.output, {"--pred": args.pred, "--gt": args.gt, "--prompts": args.prompts,
                                      "--sequences": args.sequences})
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
