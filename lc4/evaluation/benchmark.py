"""`lc4 benchmark`: colorize a whole evaluation set with a Lightning predict loop, then score it.

One run turns a set (DAVIS layout, frame folders or video files, see
:mod:`lc4.evaluation.discover`) into::

    OUTPUT/gt/<seq>/00000.png …      ground truth, the paper's protocol (resolution², no crop)
    OUTPUT/gray/<seq>/00000.png …    its CIELAB L* × 2.55 (what the model is given, see below)
    OUTPUT/pred/<seq>/00000.png …    the colorized result, written atomically
    OUTPUT/log/<seq>.jsonl           one line per colorization: rank, frames, seconds, prompt
    OUTPUT/benchmark.json            the settings and prompts the results belong to
    OUTPUT/report.{json,csv,md}      ``evaluate(OUTPUT/pred, OUTPUT/gt)``

Why a predict loop: ``Trainer(strategy="ddp").predict`` shards a dataset of sequence names over
every process of every node with Lightning's unrepeated distributed sampler, so each video is
colorized once, by one rank. Resuming is by construction: a ``pred/<seq>`` folder only appears
(by rename) once complete, so finished sequences are skipped and a killed run leaves only hidden
temporaries, which the next run removes. All processes must see the same OUTPUT (a shared
filesystem on multi-node runs); global rank 0 prepares the ground truth before the others start
and runs the evaluation after all of them have finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .discover import discover_videos, read_frame_folder
from .prompts import load_prompts
from .protocol import prepare_ground_truth, sequence_list

__all__ = [
    "BenchmarkSettings",
    "BenchmarkLayout",
    "plan_prompts",
    "lightness_to_grey_rgb",
    "check_settings",
    "save_settings",
    "is_done",
    "pending_sequences",
    "remove_partials",
    "read_log",
    "recover_log",
    "SequenceNames",
    "BenchmarkData",
    "ColorizeSequences",
    "build_trainer",
    "launched_as_rank_zero",
    "run_benchmark",
    "evaluate_benchmark",
]

log = logging.getLogger("lc4")


# --------------------------------------------------------------------------- settings and layout


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything that decides the pixels of a result (a resumed run must use the same)."""

    model: str
    steps: int = 50
    guidance: float = 4.5
    seed: int = 0
    resolution: int = 256  # the model's working resolution (short side)
    fusion: str = "auto"
    window: str = "skip"
    weighting: str = "distance"
    scheduler: str = "DDIMScheduler"
    dtype: str = "float32"
    eval_resolution: int | None = 256  # ground-truth size (square, no crop); None = native

    def describe(self) -> str:
        """One line for the report's conventions."""
        return (f"model {self.model}, {self.scheduler} {self.steps} steps, guidance {self.guidance:g}, seed "
                f"{self.seed}, working resolution {self.resolution}, CCF {self.fusion} ({self.window} window, "
                f"{self.weighting} weights), {self.dtype}")


@dataclass(frozen=True)
class BenchmarkLayout:
    """Paths under the output folder of one benchmark."""

    root: Path

    @property
    def pred(self) -> Path:
        return self.root / "pred"

    @property
    def gt(self) -> Path:
        return self.root / "gt"

    @property
    def gray(self) -> Path:
        return self.root / "gray"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def settings(self) -> Path:
        return self.root / "benchmark.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def created(self) -> list[Path]:
        """What a benchmark writes (and `--overwrite` removes): never anything else in the folder."""
        return [self.pred, self.gt, self.gray, self.log, self.settings,
                *(self.root / f"report.{ext}" for ext in ("json", "csv", "md"))]


def plan_prompts(
    dataset: str | os.PathLike,
    prompts: str | os.PathLike | Mapping[str, str],
    sequences: str | os.PathLike | Sequence[str] | None = None,
    default_prompt: str | None = None,
) -> dict[str, str]:
    """Sequence name → prompt for every sequence to benchmark, in the set's natural order.

    A sequence without an entry in ``prompts`` is an error (L-C4 is language-guided: a silent
    fallback would bias the scores) unless ``default_prompt`` is given. ``sequences`` restricts
    the set (``davis30``, ``videvo20``, a text file or names); a listed name missing from the set
    is an error. Entries for videos that are not in the set are ignored.
    """
    videos = discover_videos(dataset)
    table = load_prompts(prompts)
    if sequences is None:
        names = list(videos)
    else:
        names = list(sequence_list(sequences if isinstance(sequences, (str, os.PathLike)) else list(sequences)))
        missing = [n for n in names if n not in videos]
        if missing:
            raise FileNotFoundError(f"{len(missing)} listed sequence(s) not in {dataset}: {', '.join(missing[:10])}")
    if default_prompt is not None and not default_prompt.strip():
        raise ValueError("--default-prompt must not be empty")
    unprompted = [n for n in names if n not in table]
    if unprompted and default_prompt is None:
        more = " …" if len(unprompted) > 10 else ""
        raise ValueError(f"{len(unprompted)} of {len(names)} sequence(s) have no prompt in {prompts}: "
                         f"{', '.join(unprompted[:10])}{more} (add them, or pass --default-prompt TEXT)")
    return {n: table.get(n, default_prompt or "") for n in names}


def lightness_to_grey_rgb(lightness: np.ndarray) -> np.ndarray:
    """The protocol's grey frames (uint8 CIELAB L* × 2.55) as the sRGB grey image with that L*.

    ``prepare_ground_truth`` stores L* × 2.55; the pipeline's input convention is an sRGB grey
    frame whose own CIELAB L is the lightness (``lc4.color.to_grey``), and it keeps the input's L
    in the output. Decoding here makes the output's lightness the ground truth's (to within the
    0.4-unit step of the stored L*); reading the PNG as RGB directly would brighten mid-tones by
    up to 3.4 L* units.
    """
    from lc4.color import linear_to_srgb

    grey = np.asarray(lightness)
    if grey.dtype != np.uint8:
        raise ValueError(f"lightness frames must be uint8 (L* x 2.55), got {grey.dtype}")
    lstar = torch.arange(256, dtype=torch.float64) / 2.55
    # CIE 1976 inverse: relative luminance Y of L* (a = b = 0 is the neutral axis, so R = G = B = encode(Y))
    y = torch.where(lstar > 8.0, ((lstar + 16.0) / 116.0) ** 3, lstar / (24389.0 / 27.0))
    lut = torch.round(linear_to_srgb(y).clamp(0.0, 1.0) * 255.0).to(torch.uint8).numpy()
    return np.repeat(lut[grey][..., None], 3, axis=-1)


# --------------------------------------------------------------------------- resume state


def _settings_record(settings: BenchmarkSettings, prompts: Mapping[str, str]) -> dict[str, Any]:
    return {"settings": asdict(settings), "prompts": dict(prompts)}


def check_settings(layout: BenchmarkLayout, settings: BenchmarkSettings, prompts: Mapping[str, str]) -> None:
    """Refuse to resume into an output made with other settings, or with another prompt for a done video."""
    if not layout.settings.is_file():
        return
    try:
        saved = json.loads(layout.settings.read_text(encoding="utf-8"))
        old, old_prompts = dict(saved["settings"]), dict(saved["prompts"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{layout.settings} is not a benchmark settings file ({exc}); "
                         "use another --output or --overwrite") from None
    new = asdict(settings)
    changed = [f"{k} {new[k]!r} (saved: {old.get(k)!r})" for k in new if old.get(k) != new[k]]
    if changed:
        raise ValueError(f"{layout.root} holds results made with other settings: {'; '.join(changed)}; "
                         "use another --output, or --overwrite to start again")
    reprompted = [n for n, p in prompts.items() if n in old_prompts and old_prompts[n] != p and is_done(layout, n)]
    if reprompted:
        raise ValueError(f"the prompt of {len(reprompted)} finished sequence(s) changed: {', '.join(reprompted[:10])}; "
                         "delete their pred/ folders to redo them, or use --overwrite")


def save_settings(layout: BenchmarkLayout, settings: BenchmarkSettings, prompts: Mapping[str, str]) -> None:
    """Write (atomically) the settings and the prompts, merged with those of earlier runs."""
    record = _settings_record(settings, prompts)
    if layout.settings.is_file():
        try:
            record["prompts"] = {**json.loads(layout.settings.read_text(encoding="utf-8"))["prompts"], **prompts}
        except (ValueError, KeyError, TypeError):
            pass
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    if layout.settings.is_file() and layout.settings.read_text(encoding="utf-8") == text:
        return
    _replace_text(layout.settings, text)


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole through a hidden ``.<name>.<pid>.partial`` and a rename (a killed run's
    temporary is swept by ``remove_partials``), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def is_done(layout: BenchmarkLayout, name: str) -> bool:
    """Whether ``pred/<name>`` exists with frames (it only appears, by rename, once complete)."""
    folder = layout.pred / name
    return folder.is_dir() and any(p.suffix == ".png" for p in folder.iterdir())


def pending_sequences(layout: BenchmarkLayout, names: Sequence[str]) -> list[str]:
    """The names whose result is not written yet, in order."""
    return [n for n in names if not is_done(layout, n)]


def remove_partials(folder: Path) -> list[Path]:
    """Delete temporaries a killed run left in ``folder`` (hidden ``.*.partial`` / ``.*.old``); returns them."""
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith((".partial", ".old"))]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def read_log(layout: BenchmarkLayout, name: str) -> list[dict[str, Any]]:
    """The records of ``log/<name>.jsonl`` (one per time the sequence was colorized)."""
    path = layout.log / f"{name}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append_log(layout: BenchmarkLayout, name: str, record: Mapping[str, Any]) -> None:
    """Add ``record`` to ``log/<name>.jsonl`` unless a record with its ``id`` is there already.

    The file is rewritten whole and renamed into place, so a kill never leaves half a line.
    """
    records = read_log(layout, name)
    if any(r.get("id") == record["id"] for r in records):
        return
    _replace_text(layout.log / f"{name}.jsonl",
                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*records, dict(record)]))


def _journal(layout: BenchmarkLayout, name: str) -> Path:
    """Where a result's log record waits between its folder's rename and the log (``log/.<name>.pending.json``)."""
    return layout.log / f".{name}.pending.json"


def recover_log(layout: BenchmarkLayout) -> list[str]:
    """Log the results a killed run wrote but did not log; returns their names.

    A result's record is journalled before its folder is renamed into ``pred/`` and moved to the
    log after, so a kill between the two leaves the journal: kept if the folder exists (the result
    is done and must keep its record), dropped if not (it will be colorized again).
    """
    recovered = []
    for journal in sorted(layout.log.glob(".*.pending.json")) if layout.log.is_dir() else []:
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            name = record["sequence"]
        except (ValueError, KeyError, TypeError):
            name = None
        if name is not None and is_done(layout, name):
            _append_log(layout, name, record)
            recovered.append(name)
        journal.unlink(missing_ok=True)
    return recovered


# --------------------------------------------------------------------------- Lightning parts


class SequenceNames(Dataset):
    """A map-style dataset of sequence names; ``None`` entries pad it so every rank gets a batch."""

    def __init__(self, names: Sequence[str | None]):
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str | None:
        return self.names[index]


def _first(batch: list[str | None]) -> str | None:
    return batch[0]


class BenchmarkData(pl.LightningDataModule):
    """Global rank 0 prepares the ground truth; every rank then predicts over the pending names.

    The pending list is computed once on rank 0 (after the ground truth exists) and broadcast,
    so all ranks shard the same list even if their views of the filesystem lag.
    """

    def __init__(self, dataset: str | os.PathLike, layout: BenchmarkLayout, names: Sequence[str],
                 eval_resolution: int | None, max_sequences: int | None = None):
        super().__init__()
        self.prepare_data_per_node = False  # one shared OUTPUT: only global rank 0 writes gt/ and gray/
        self.dataset, self.layout, self.names = dataset, layout, list(names)
        self.eval_resolution, self.max_sequences = eval_resolution, max_sequences
        self.todo: list[str] = []

    def prepare_data(self) -> None:
        for stale in (remove_partials(self.layout.pred) + remove_partials(self.layout.root)
                      + remove_partials(self.layout.log)):
            log.info("removed %s (left by an interrupted run)", stale.name)
        for name in recover_log(self.layout):
            log.info("%s: logged the result an interrupted run wrote", name)
        prepare_ground_truth(self.dataset, self.layout.root, resolution=self.eval_resolution, sequences=self.names)

    def setup(self, stage: str) -> None:
        todo = pending_sequences(self.layout, self.names)
        if self.max_sequences is not None:
            todo = todo[: self.max_sequences]
        if self.trainer is not None and self.trainer.world_size > 1:
            todo = self.trainer.strategy.broadcast(todo, src=0)
        self.todo = list(todo)

    def predict_dataloader(self) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        padded: list[str | None] = [*self.todo, *[None] * max(0, world - len(self.todo))]
        return DataLoader(SequenceNames(padded), batch_size=1, shuffle=False, num_workers=0, collate_fn=_first)


class ColorizeSequences(pl.LightningModule):
    """Predict step = colorize one sequence's grey frames and write ``pred/<seq>`` atomically.

    The pipeline is a plain attribute (not a submodule), moved to this rank's device in
    :meth:`setup`; nothing here is trained, so DDP never wraps it.
    """

    def __init__(self, pipe: Any, layout: BenchmarkLayout, prompts: Mapping[str, str], settings: BenchmarkSettings,
                 pipeline_options: Mapping[str, Any] | None = None):
        super().__init__()
        self.pipe, self.layout, self.prompts, self.settings = pipe, layout, dict(prompts), settings
        self.pipeline_options = dict(pipeline_options or {})

    def setup(self, stage: str) -> None:
        self.pipe.to(self.trainer.strategy.root_device)
        self.pipe.enable_attention_backend()

    def predict_step(self, batch: str | None, batch_idx: int) -> dict[str, Any] | None:
        from lc4.io import write_png_folder

        name = batch
        if name is None or is_done(self.layout, name):
            return None
        start = time.perf_counter()
        grey = lightness_to_grey_rgb(read_frame_folder(self.layout.gray / name)[..., 0])
        s = self.settings
        chunks = self.pipe.colorize_chunks(
            grey, self.prompts[name], num_inference_steps=s.steps, guidance_scale=s.guidance, seed=s.seed,
            resolution=s.resolution, fusion=s.fusion, window=s.window, weighting=s.weighting, progress=False,
            **self.pipeline_options)
        rank, world = self.global_rank, self.trainer.world_size
        record = {"sequence": name, "id": uuid.uuid4().hex, "rank": rank, "world_size": world,
                  "host": socket.gethostname(), "device": str(self.pipe.device), "prompt": self.prompts[name]}

        def journal(frames: int) -> None:  # the record exists before the result does (recover_log)
            record.update(frames=frames, seconds=round(time.perf_counter() - start, 3),
                          finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            _replace_text(_journal(self.layout, name), json.dumps(record, ensure_ascii=False))

        try:
            frames = write_png_folder(chunks, self.layout.pred / name, before_commit=journal)
        except FileExistsError:  # finished meanwhile by another process: keep that one
            _journal(self.layout, name).unlink(missing_ok=True)
            log.warning("%s: already written by another process, kept", name)
            return None
        _append_log(self.layout, name, record)
        _journal(self.layout, name).unlink(missing_ok=True)
        log.info("[rank %d] %s: %d frames in %.1f s", rank, name, frames, record["seconds"])
        return record

    def on_predict_end(self) -> None:
        # every rank has written its results before rank 0 goes on to evaluate
        self.trainer.strategy.barrier("lc4-benchmark-colorized")


def build_trainer(accelerator: str = "auto", devices: int | str = 1, num_nodes: int = 1, progress: bool = True,
                  root: str | os.PathLike | None = None) -> pl.Trainer:
    """A predict-only Trainer: DDP when more than one process, no logger, no checkpoints."""
    multi = num_nodes > 1 or (isinstance(devices, int) and devices > 1)
    try:
        return pl.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                          strategy="ddp" if multi else "auto", logger=False, enable_checkpointing=False,
                          enable_model_summary=False, enable_progress_bar=progress, default_root_dir=root)
    except Exception as exc:  # Lightning's MisconfigurationException: one line with our option names
        if type(exc).__name__ != "MisconfigurationException":
            raise
        raise ValueError(f"--accelerator {accelerator} --devices {devices} --num-nodes {num_nodes}: {exc}") from None


def launched_as_rank_zero() -> bool:
    """True in the process a user started: not a DDP child, not a non-zero rank of torchrun/SLURM/another node."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _all_written(layout: BenchmarkLayout, names: Sequence[str]) -> bool:
    """Every result, ground truth and grey input exists (nothing for a Trainer to do)."""
    return not pending_sequences(layout, names) and all(
        (layout.gt / n).is_dir() and (layout.gray / n).is_dir() for n in names)


class _NoTips(logging.Filter):
    """Drops Lightning's advertising lines ("💡 Tip: ...") from a benchmark's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


@contextmanager
def _quiet_lightning(progress: bool) -> Iterator[None]:
    """Without Lightning's tips (and, unless `progress`, its info lines); restores the loggers after."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric")]
    # a filter acts only where a record is made, so on the loggers rank_zero_info() writes to
    sources = [logging.getLogger(f"{n}.utilities.rank_zero") for n in ("pytorch_lightning", "lightning_fabric")]
    levels, tips = [lg.level for lg in loggers], _NoTips()
    for lg in sources:
        lg.addFilter(tips)
    if not progress:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg in sources:
            lg.removeFilter(tips)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _launcher_children(trainer: pl.Trainer) -> list[Any]:
    launcher = getattr(trainer.strategy, "launcher", None)
    return list(getattr(launcher, "procs", []) or [])


def run_benchmark(
    pipe: Any,
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    prompts: Mapping[str, str],
    settings: BenchmarkSettings,
    *,
    accelerator: str = "auto",
    devices: int | str = 1,
    num_nodes: int = 1,
    max_sequences: int | None = None,
    metrics: Sequence[str] | str | None = None,
    weights_dir: str | os.PathLike | None = None,
    clip_model: str | os.PathLike | None = None,
    pipeline_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> Any:
    """Colorize every sequence of ``prompts`` not yet done, then evaluate on global rank 0.

    Returns the :class:`~lc4.evaluation.report.Report` on global rank 0 once every sequence is
    done, else None (other ranks, or a run stopped early by ``max_sequences``).
    ``pipe`` is an ``LC4Pipeline`` (any device: each rank moves it to its own).
    """
    say = say or (lambda _m: None)
    layout = BenchmarkLayout(Path(output).expanduser())
    names = list(prompts)
    if _all_written(layout, names):  # every process sees this, so none starts a Trainer that others would wait on
        say(f"all {len(names)} sequences are colorized already: evaluating")
        if not launched_as_rank_zero():
            return None
        device = "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
        return evaluate_benchmark(layout, prompts, settings, metrics=metrics, weights_dir=weights_dir,
                                  clip_model=clip_model, device=device, say=say if progress else None)
    data = BenchmarkData(dataset, layout, names, settings.eval_resolution, max_sequences)
    module = ColorizeSequences(pipe, layout, prompts, settings, pipeline_options)
    with _quiet_lightning(progress):
        trainer = build_trainer(accelerator, devices, num_nodes, progress, layout.root)
        trainer.predict(module, datamodule=data, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    report = None
    left = pending_sequences(layout, names)
    if left:
        say(f"{len(names) - len(left)} of {len(names)} sequences done, {len(left)} left "
            f"(next: {', '.join(left[:5])}); run the same command again to continue")
    else:
        report = evaluate_benchmark(layout, prompts, settings, metrics=metrics, weights_dir=weights_dir,
                                    clip_model=clip_model, device=str(trainer.strategy.root_device),
                                    say=say if progress else None)
    for proc in _launcher_children(trainer):  # return when the whole job has finished
        try:
            proc.wait(timeout=120)
        except Exception:  # a child that does not exit is left to Lightning's observer
            pass
    return report


def evaluate_benchmark(layout: BenchmarkLayout, prompts: Mapping[str, str], settings: BenchmarkSettings, *,
                       metrics: Sequence[str] | str | None = None, weights_dir: str | os.PathLike | None = None,
                       clip_model: str | os.PathLike | None = None, device: str | None = None,
                       say: Callable[[str], None] | None = None) -> Any:
    """Score ``pred/`` against ``gt/`` with the harness and save ``report.{json,csv,md}``."""
    from .harness import evaluate

    names = list(prompts)
    report = evaluate(layout.pred, layout.gt, prompts=dict(prompts), resolution=settings.eval_resolution,
                      metrics=metrics, sequences=names, strict=True, weights_dir=weights_dir,
                      clip_model=clip_model, device=device, name=Path(settings.model).name or settings.model,
                      log=say)
    records = {n: read_log(layout, n) for n in names}
    seconds = [r[-1]["seconds"] for r in records.values() if r]
    for n, r in records.items():
        if r:
            report.per_video[n]["seconds"] = r[-1]["seconds"]
    report.conventions["colorization"] = settings.describe()
    report.conventions["model input"] = ("CIELAB L* of the ground truth (gray/, L* x 2.55) given as the sRGB grey "
                                         "frame of that L*; output lightness recombined from it")
    if seconds:
        report.conventions["time"] = (f"{sum(seconds):.1f} s colorizing {len(seconds)} videos "
                                      f"(sum over processes; per video in report.json)")
    report.save(layout.report)
    return report
