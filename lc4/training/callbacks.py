"""Training callbacks: sample pictures, checkpoints on preemption, export at the end.

Every callback resolves the run's log folder once, in `setup`, on every rank: `trainer.log_dir`
is a collective under DDP (rank 0 broadcasts it), so calling it from rank 0 alone would hang.

Outputs default to the trainer's `default_root_dir` (`--trainer.default_root_dir`), so configs
need not repeat it: `PreemptionCheckpoint` → `<root>/checkpoints`, `ExportOnTrainEnd` →
`<root>/export`, and `use_root_dir_for_outputs` (called by `lc4 train` on its trainer, whose
default logger is a `CSVLogger` in `<root>`) puts a `ModelCheckpoint` without `dirpath` in
`<root>/checkpoints` (fixed, so `--ckpt_path last` finds the previous run's `last.ckpt`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

log = logging.getLogger("lc4")


def checkpoint_dir(trainer: pl.Trainer) -> Path:
    """`<default_root_dir>/checkpoints`: where the run's checkpoints go unless a callback names a folder."""
    return Path(trainer.default_root_dir) / "checkpoints"


def use_root_dir_for_outputs(trainer: pl.Trainer) -> None:
    """Give every `ModelCheckpoint` without a `dirpath` the folder `<default_root_dir>/checkpoints`.

    Lightning's own default is the versioned log folder (`lightning_logs/version_N/checkpoints`),
    which a resumed run (a new version) would not find with `--ckpt_path last`. Call it before
    `fit` (Lightning looks for `last` before any callback's `setup`).
    """
    from lightning_fabric.utilities.cloud_io import get_filesystem
    from pytorch_lightning.callbacks import ModelCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            path = str(checkpoint_dir(trainer))
            callback._fs = get_filesystem(path)
            callback.dirpath = os.path.realpath(os.path.expanduser(path)) if "://" not in path else path


def resolve_log_dir(trainer: pl.Trainer) -> Path:
    """The run's log folder; call it on every rank at the same point (it is a broadcast under DDP)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """`(f, 3, h, w)` in [-1, 1] → `(f, h, w, 3)` uint8 RGB."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def was_preempted(trainer: pl.Trainer) -> bool:
    """Whether a `PreemptionCheckpoint` of `trainer` stopped the run."""
    return any(isinstance(c, PreemptionCheckpoint) and c.preempted for c in trainer.callbacks)


def _slurm_requeues(trainer: pl.Trainer) -> bool:
    """Whether Lightning's SLURM environment handles SIGUSR1 itself (checkpoint + requeue)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is None:  # single-device strategies keep it on the connector, as Lightning's signal code does
        env = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    return isinstance(env, SLURMEnvironment) and bool(getattr(env, "auto_requeue", False))


class SampleLogger(pl.Callback):
    """Every `every_n_steps`, colorize a fixed validation clip and save grey | prediction | truth as PNG.

    The clip is the first item of the datamodule's validation set (else its training set); the
    pictures go to `<log_dir>/samples/step_XXXXXX.png` and, with a TensorBoard logger, to TensorBoard.
    Stage 0 shows the reconstruction D(E(x), skips(E^lum(grey))); stages 1–2 run the pipeline.
    Only rank 0 renders; it uses its own generator, so training randomness is untouched. Under
    FSDP no rank holds the whole model, so nothing is rendered (one warning): colorize with an
    export of a checkpoint instead (`lc4 export`, `lc4 colorize --model`).
    """

    def __init__(self, every_n_steps: int = 500, num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 at_start: bool = True):
        if every_n_steps < 0 or num_inference_steps < 1:
            raise ValueError(f"every_n_steps must be >= 0 and num_inference_steps >= 1, got {every_n_steps}, "
                             f"{num_inference_steps}")
        self.every_n_steps, self.steps, self.guidance, self.at_start = every_n_steps, num_inference_steps, guidance_scale, at_start
        self._clip: dict[str, Any] | None = None
        self._dir: Path | None = None
        self._last_step = -1
        self._off = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from .strategies import is_fsdp

        self._dir = resolve_log_dir(trainer)
        self._off = is_fsdp(trainer.strategy)
        if self._off and trainer.is_global_zero:
            log.warning("SampleLogger: no sample pictures under %s (the weights are sharded; rank 0 alone cannot "
                        "run the model); colorize with `lc4 export` of a checkpoint instead",
                        type(trainer.strategy).__name__)

    def _reference(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        if self._clip is None:
            dm = trainer.datamodule
            for name in ("val_dataset", "train_dataset"):
                ds = getattr(dm, name, None)
                if ds is not None and len(ds):
                    item = ds[0]
                    self._clip = {"pixel_values": item["pixel_values"], "caption": item.get("caption", "")}
                    break
        return self._clip

    @torch.no_grad()
    def render(self, trainer: pl.Trainer, module: pl.LightningModule) -> Path | None:
        """Write the picture for the current step; returns its path (None without data)."""
        from ..color import to_grey
        from ..pipeline import LC4Pipeline
        from ..strip import make_strip

        clip = self._reference(trainer)
        if clip is None:
            return None
        truth = to_uint8(clip["pixel_values"])
        model = module.model
        was_training = model.training
        model.eval()
        try:
            with trainer.precision_plugin.forward_context():  # autocast, as in training_step
                if module.hparams.stage == 0:
                    from .losses import grey_input

                    rgb = clip["pixel_values"].to(module.device, model.vae.dtype)
                    lum = model.encode_luminance(grey_input(rgb))
                    pred = to_uint8(model.decode(model.encode_frames(rgb, sample=False), lum))
                else:
                    pred = LC4Pipeline(model)(to_grey(truth), clip["caption"] or "a video",
                                              num_inference_steps=self.steps, guidance_scale=self.guidance, seed=0,
                                              resolution=truth.shape[1], progress=False).frames
        finally:
            model.train(was_training)
            module.freeze_frozen_parts()
        strip = make_strip([to_grey(truth), pred, truth], ["grey", "ours", "truth"], frames=8, height=64)
        out = (self._dir or resolve_log_dir(trainer)) / "samples" / f"step_{trainer.global_step:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        strip.save(out)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("samples", np.asarray(strip), trainer.global_step, dataformats="HWC")
        return out

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.at_start and trainer.is_global_zero and not self._off:
            self._last_step = trainer.global_step
            self.render(trainer, module)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if (trainer.is_global_zero and not self._off and self.every_n_steps and step % self.every_n_steps == 0
                and step != self._last_step):  # once per optimizer step, also when accumulating
            self._last_step = step
            self.render(trainer, module)


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM/SIGUSR1 (cluster preemption), save `<dirpath>/preempted.ckpt` and stop cleanly.

    `dirpath` defaults to `<default_root_dir>/checkpoints`, beside the periodic checkpoints.

    The signal only sets a flag; at the end of the current training batch every rank agrees on it
    (one all-reduce of a bool under DDP, so a signal that reached only some ranks cannot hang the
    others), the checkpoint is saved and the trainer stops. `ExportOnTrainEnd` skips the export of
    a preempted run. Resume with `--ckpt_path <dirpath>/preempted.ckpt`; the data loader continues
    mid-epoch where it stopped. While fitting, these handlers replace Lightning's own SIGTERM
    handler; the previous handlers come back when training ends. Under SLURM with auto-requeue
    (Lightning's default there) SIGUSR1 is left to Lightning, which saves `hpc_ckpt_N.ckpt` in the
    root folder and requeues the job; SIGTERM is still handled here.
    """

    def __init__(self, dirpath: str | None = None, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
        unknown = [s for s in signals if not s.startswith("SIG")]
        if unknown:
            raise ValueError(f"signals must be names such as SIGTERM, got {unknown}")
        self.dirpath, self.signals = dirpath, tuple(signals)
        self._hit = False
        self.preempted = False
        self._previous: dict[int, Any] = {}
        self._dir: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._dir = Path(self.dirpath) if self.dirpath else checkpoint_dir(trainer)

    @property
    def path(self) -> Path | None:
        """Where the checkpoint goes (known after setup)."""
        return None if self._dir is None else self._dir / "preempted.ckpt"

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._hit = self.preempted = False
        if threading.current_thread() is not threading.main_thread():
            return
        skip = {"SIGUSR1"} if _slurm_requeues(trainer) else set()  # Lightning saves hpc_ckpt and requeues
        for name in self.signals:
            if hasattr(signal, name) and name not in skip:
                signum = getattr(signal, name)
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self.handler)

    def handler(self, signum: int, frame: Any) -> None:
        """The signal handler: only remembers that the run must stop (safe at any point of a step)."""
        self._hit = True

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        hit = self._hit
        if trainer.world_size > 1:
            hit = trainer.strategy.reduce_boolean_decision(hit, all=False)
        if hit and not self.preempted:
            path = self.path or checkpoint_dir(trainer) / "preempted.ckpt"
            trainer.save_checkpoint(path)
            self.preempted = True
            if trainer.is_global_zero:
                log.warning("preempted: saved %s; resume with --ckpt_path %s", path, path)
            trainer.should_stop = True

    def _restore_handlers(self) -> None:
        """Put back the handlers found at train start, where ours is still the one installed."""
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                if signal.getsignal(signum) == self.handler:
                    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()


class ExportOnTrainEnd(pl.Callback):
    """At the end of fit, write the model (EMA weights) in the pipeline's format to `dirpath`
    (default `<default_root_dir>/export`).

    A run stopped by `PreemptionCheckpoint` is not exported (it is unfinished; resume it). Rank 0
    writes; under FSDP every rank first takes part in gathering the full weights.
    """

    def __init__(self, dirpath: str | None = None, use_ema: bool = True):
        self.dirpath, self.use_ema = dirpath, use_ema
        self._dir: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._dir = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "export"

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if was_preempted(trainer):
            if trainer.is_global_zero:
                log.warning("not exporting: the run was preempted; resume it to finish")
            return
        from .strategies import is_fsdp

        target = self._dir or Path(trainer.default_root_dir) / "export"
        if is_fsdp(trainer.strategy):  # the weights are sharded: every rank gathers, rank 0 writes
            out = module.export_sharded(target, use_ema=self.use_ema)
        elif trainer.is_global_zero:
            out = module.export(target, use_ema=self.use_ema)
        else:
            out = None
        if out is not None:
            print(f"exported the trained model to {out} (lc4 colorize --model {out})", flush=True)
