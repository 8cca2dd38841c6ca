"""`lc4 benchmark`: colorize an evaluation set (sharded over GPUs and nodes) and write its report.

Registered by `lc4.cli` through :func:`add_parser`. Everything a user can get wrong (paths,
prompts, options, a resumed output with other settings, the model) is checked before the
Trainer starts, with one-line `ValueError`/`FileNotFoundError` messages; the work itself is
:func:`lc4.evaluation.benchmark.run_benchmark` (see docs/evaluation.md, "lc4 benchmark").
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .evaluation.cli import parse_resolution

if TYPE_CHECKING:
    from .evaluation.benchmark import BenchmarkLayout

__all__ = ["add_parser", "run"]

log = logging.getLogger("lc4")


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of devices >= 1 or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a number of devices >= 1 or 'auto', got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `benchmark`; its handler is :func:`run`."""
    p = subparsers.add_parser(
        "benchmark", help="colorize a whole evaluation set (multi-GPU, resumable) and evaluate it",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Prepare the ground truth (paper protocol: frames resized to --eval-resolution², no crop), "
        "colorize the grey version of every sequence with a Lightning predict loop (videos sharded over "
        "--devices x --num-nodes processes), write OUTPUT/pred/<seq>/ PNG folders atomically, then evaluate "
        "them into OUTPUT/report.{json,csv,md}. Rerunning the same command resumes.")
    p.add_argument("--model", default="demo", help="as for lc4 colorize: L-C4 folder, SD1.5 folder/file, 'demo', "
                   "'random-tiny'")
    p.add_argument("--dataset", required=True, help="evaluation set: DAVIS root (JPEGImages/480p/<seq>/), folder of "
                   "frame folders, or folder of video files")
    p.add_argument("--prompts", required=True, help="JSON or CSV mapping sequence name -> prompt")
    p.add_argument("--output", "-o", required=True, help="output folder (pred/, gt/, gray/, log/, report.*)")
    p.add_argument("--sequences", default=None, help="restrict to davis30, videvo20, or a text file of names")
    p.add_argument("--default-prompt", default=None,
                   help="prompt for sequences missing from --prompts (default: such sequences are an error)")
    p.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default="auto", help="Lightning accelerator")
    p.add_argument("--devices", type=_devices, default=1, help="processes (GPUs) per node, or 'auto'")
    p.add_argument("--num-nodes", type=int, default=1, help="nodes (launch the command on each, e.g. via SLURM)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=4.5, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="seed of every sequence (results do not depend on sharding)")
    p.add_argument("--resolution", type=int, default=None,
                   help="working resolution of the model (short side, multiple of 8); default: the model's "
                   "(256 for SD1.5)")
    p.add_argument("--eval-resolution", type=parse_resolution, default=256,
                   help="ground-truth and evaluation size (square, no crop), or 'native'")
    p.add_argument("--fusion", choices=["auto", "exact", "bounded", "none"], default="auto", help="Cross-Clip Fusion")
    p.add_argument("--window", choices=["skip", "sliding"], default="skip", help="CCF clip layout")
    p.add_argument("--weighting", choices=["distance", "uniform"], default="distance", help="CCF fusion weights")
    p.add_argument("--scheduler", default="DDIMScheduler", help="any diffusers scheduler class name")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="compute precision")
    p.add_argument("--attention", choices=["auto", "sdpa", "xformers"], default="auto", help="attention kernel")
    p.add_argument("--truncate-prompt", action="store_true", help="accept prompts longer than 77 CLIP tokens (cut)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of .ckpt files")
    p.add_argument("--metrics", nargs="+", default=None,
                   help="metrics for the report (as lc4 evaluate; default the paper's six plus clip_score)")
    p.add_argument("--weights-dir", default=None, help="folder with metric weights (LPIPS, I3D, Inception)")
    p.add_argument("--clip-model", default=None, help="local transformers CLIP folder for clip_score")
    p.add_argument("--max-sequences", type=int, default=None,
                   help="colorize at most this many pending sequences in this run (time-limited jobs); the report "
                   "is written by the run that finishes the set")
    p.add_argument("--overwrite", action="store_true",
                   help="delete this command's earlier outputs in --output (pred/, gt/, gray/, log/, report) first; "
                   "refused if they hold anything lc4 did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _check_options(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    for name, value in (("--steps", args.steps), ("--num-nodes", args.num_nodes)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.max_sequences is not None and args.max_sequences < 1:
        raise ValueError(f"--max-sequences must be >= 1, got {args.max_sequences}")
    if args.resolution is not None and (args.resolution < 8 or args.resolution % 8):
        raise ValueError(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if not np.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number, got {args.guidance}")
    if args.accelerator == "gpu":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not have:
            raise ValueError("--accelerator gpu: CUDA is not available on this machine (use --accelerator cpu)")
        if isinstance(args.devices, int) and args.devices > have:
            raise ValueError(f"--devices {args.devices}: this node has {have} GPU(s)")
    import diffusers

    if not args.scheduler.endswith("Scheduler") or getattr(diffusers, args.scheduler, None) is None:
        raise ValueError(f"unknown scheduler {args.scheduler!r}: use a diffusers scheduler class name such as "
                         "DDIMScheduler")


def _input_paths(args: argparse.Namespace) -> list[Path]:
    """Every path the command reads (dataset, prompts, sequence list, model, metric weights) that exists."""
    named = [args.dataset, args.prompts, args.sequences, args.model, args.weights_dir, args.clip_model]
    paths = [Path(p).expanduser() for p in named if p is not None]
    return [p for p in paths if p.exists() or p.is_symlink()]


def _check_output(output: Path, dataset: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output inside the dataset, a dataset inside the output, or an input among the paths lc4 writes."""
    from .evaluation.benchmark import BenchmarkLayout
    from .io.atomic import _is_ancestor, _same_path

    if output.exists() and not output.is_dir():
        raise ValueError(f"--output must be a folder, got the file {output}")
    out, src = output.expanduser().resolve(), dataset.expanduser().resolve()
    if out == src or src in out.parents:
        raise ValueError(f"--output {output} is inside --dataset {dataset}: inputs are never written to")
    if _same_path(output, dataset) or _is_ancestor(output, dataset):
        raise ValueError(f"--dataset {dataset} is inside --output {output}: lc4 never writes into a folder that "
                         "holds its input (choose another --output)")
    written = BenchmarkLayout(output).created()
    for inp in inputs:
        for path in written:
            if _same_path(path, inp) or _is_ancestor(path, inp):
                raise ValueError(f"{inp} is an input but lies in {path}, which lc4 benchmark writes (and --overwrite "
                                 "deletes): move it or choose another --output")


def _check_overwrite(layout: BenchmarkLayout, inputs: Sequence[Path] = ()) -> None:
    """Refuse (one-line ``ValueError``) unless everything ``--overwrite`` would delete is lc4 benchmark's own.

    ``pred/``, ``gt/`` and ``gray/`` may hold only frame folders lc4 wrote (each checked by
    :func:`lc4.io.check_replaceable`), ``log/`` only ``<seq>.jsonl`` files (and journals), and ``benchmark.json``
    and ``report.*`` must be plain files; lc4's hidden temporaries and OS clutter are ignored.
    """
    from .io.atomic import _is_ancestor, _is_lc4_clutter, _same_path, check_replaceable

    hint = "--overwrite only deletes lc4 benchmark's own outputs: move it or choose another --output"
    try:
        cwd: Path | None = Path.cwd()
    except OSError:
        cwd = None
    folders = (layout.pred, layout.gt, layout.gray, layout.log)
    for folder in folders:
        if not (folder.exists() or folder.is_symlink()):
            continue
        if folder.is_symlink() or not folder.is_dir():
            kind = "a symbolic link" if folder.is_symlink() else "a file"
            raise ValueError(f"{folder}: is {kind}, not a folder lc4 benchmark wrote; {hint}")
        if cwd is not None and (_same_path(folder, cwd) or _is_ancestor(folder, cwd)):
            raise ValueError(f"{folder}: is the current working folder (or holds it); lc4 never deletes it")
        for entry in sorted(folder.iterdir()):
            if _is_lc4_clutter(entry):
                continue
            if folder == layout.log:
                # its logs, and a record journalled by a run killed before it logged it (recover_log)
                if (entry.suffix == ".jsonl" or entry.name.startswith(".") and entry.name.endswith(".pending.json")) \
                        and entry.is_file() and not entry.is_symlink():
                    continue
            elif entry.is_dir() or entry.is_symlink():
                check_replaceable(entry, inputs)  # a sequence's frames: only when lc4 wrote all of it
                continue
            raise ValueError(f"{folder}: holds {entry.name}, which lc4 did not write; {hint}")
    for path in layout.created():
        if path not in folders and (path.is_symlink() or (path.exists() and not path.is_file())):
            raise ValueError(f"{path}: is not a file lc4 benchmark wrote; {hint}")


def run(args: argparse.Namespace) -> int:
    """Check everything, load the model, run the benchmark; 0 on success (also when stopped by --max-sequences)."""
    from .evaluation.harness import parse_metrics
    from .models.attention import set_attention_backend

    set_attention_backend(args.attention)
    _check_options(args)
    dataset, output = Path(args.dataset).expanduser(), Path(args.output).expanduser()
    if not dataset.is_dir():
        raise FileNotFoundError(f"--dataset folder not found: {dataset}")
    inputs = _input_paths(args)
    _check_output(output, dataset, inputs)
    from .evaluation.benchmark import (BenchmarkLayout, BenchmarkSettings, check_settings, launched_as_rank_zero,
                                       pending_sequences, plan_prompts, run_benchmark, save_settings)

    layout = BenchmarkLayout(output)
    if args.overwrite:
        _check_overwrite(layout, inputs)
    parse_metrics(args.metrics, with_prompts=True)
    prompts = plan_prompts(dataset, args.prompts, args.sequences, args.default_prompt)

    from .colorize_cli import check_prompt_lengths, load_pipeline

    pipe = load_pipeline(args.model, "cpu", args.dtype, args.scheduler, args.trust_checkpoint)
    settings = BenchmarkSettings(
        model=args.model, steps=args.steps, guidance=args.guidance, seed=args.seed,
        resolution=args.resolution or pipe.model.config.resolution, fusion=args.fusion, window=args.window,
        weighting=args.weighting, scheduler=args.scheduler, dtype=args.dtype, eval_resolution=args.eval_resolution)
    if not args.overwrite:
        check_settings(layout, settings, prompts)
    check_prompt_lengths(pipe, prompts.values(), args.truncate_prompt)
    if args.overwrite and launched_as_rank_zero():  # only now that every check has passed
        _check_overwrite(layout, inputs)  # again: the folder may have changed while the model loaded
        for path in layout.created():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    save_settings(layout, settings, prompts)

    def say(msg: str) -> None:  # status lines; --quiet leaves out the per-video ones
        print(f"lc4: {msg}", file=sys.stderr, flush=True)

    if launched_as_rank_zero() and not args.quiet:
        todo = pending_sequences(layout, list(prompts))
        log.info("benchmark: %d sequences, %d done, %d to colorize", len(prompts), len(prompts) - len(todo), len(todo))
    report = run_benchmark(
        pipe, dataset, output, prompts, settings, accelerator=args.accelerator, devices=args.devices,
        num_nodes=args.num_nodes, max_sequences=args.max_sequences, metrics=args.metrics,
        weights_dir=args.weights_dir, clip_model=args.clip_model, progress=not args.quiet, say=say)
    if report is not None:
        print(report.to_markdown())
        print(f"wrote {layout.pred}/ and {layout.report}.{{json,csv,md}}", file=sys.stderr)
    return 0
