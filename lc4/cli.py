"""The `lc4` command: colorize, train, evaluate, benchmark, synth.

Every failure a user can cause ends in one line on stderr and a non-zero exit status, never a
traceback (`LC4_DEBUG=1` shows it for bug reports).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError, FloatingPointError, ImportError, KeyError, OSError, RuntimeError)


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .colorize_cli import add_parser as add_colorize

    p = argparse.ArgumentParser(prog="lc4", description="L-C4: language-guided video colorization")
    p.add_argument("--version", action="version", version=f"lc4 {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_colorize(sub).set_defaults(func=lambda a: __import__("lc4.colorize_cli", fromlist=["run"]).run(a))
    for module in ("lc4.evaluation.cli", "lc4.data.synthetic_cli", "lc4.training.export", "lc4.benchmark_cli"):
        try:
            mod = __import__(module, fromlist=["add_parser", "run"])
        except ImportError:
            continue
        mod.add_parser(sub).set_defaults(func=mod.run)
    sub.add_parser("train", help="train a stage with LightningCLI: lc4 train fit --config configs/train/...",
                   add_help=False)
    return p


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="lc4: %(message)s", stream=sys.stderr)
    for noisy in ("diffusers", "transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `lc4`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":
        from .training.cli import main as train_main

        return train_main(argv[1:])
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _setup_logging()
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lc4: interrupted (partial work is kept where the command supports resuming)", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, never a traceback
        if os.environ.get("LC4_DEBUG"):
            raise
        kind = "" if isinstance(exc, USAGE_ERRORS) else f"internal error ({type(exc).__name__}): "
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"lc4: error: {kind}{message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
