"""Training callbacks: sample pictures, checkpoints on preemption, export at the end."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

log = logging.getLogger("lc4")


def _log_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir)


class SampleLogger(pl.Callback):
    """Every `every_n_steps`, colorize a fixed validation clip and save grey | prediction | truth as PNG.

    The clip is the first item of the datamodule's validation set (else its training set); the
    pictures go to `<log_dir>/samples/step_XXXXXX.png` and, with a TensorBoard logger, to TensorBoard.
    """

    def __init__(self, every_n_steps: int = 500, num_inference_steps: int = 20, guidance_scale: float = 4.5,
                 at_start: bool = True):
        self.every_n_steps, self.steps, self.guidance, self.at_start = every_n_steps, num_inference_steps, guidance_scale, at_start
        self._clip: dict[str, Any] | None = None

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
        from ..pipeline import LC4Pipeline
        from ..strip import make_strip

        clip = self._reference(trainer)
        if clip is None:
            return None
        truth = ((clip["pixel_values"].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        model = module.model
        was_training = model.training
        pipe = LC4Pipeline(model)
        try:
            if module.hparams.stage == 0:
                from .losses import grey_input

                rgb = clip["pixel_values"].to(module.device, model.vae.dtype)
                lum = model.encode_luminance(grey_input(rgb))
                pred = model.decode(model.encode_frames(rgb, sample=False), lum)
                pred = ((pred.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            else:
                from ..color import to_grey as _grey

                pred = pipe(_grey(truth), clip["caption"] or "a video", num_inference_steps=self.steps,
                            guidance_scale=self.guidance, seed=0, resolution=truth.shape[1], progress=False).frames
        finally:
            model.train(was_training)
            module.on_train_epoch_start()  # frozen parts back to eval
        from ..color import to_grey

        strip = make_strip([to_grey(truth), pred, truth], ["grey", "ours", "truth"], frames=8, height=64)
        out = _log_dir(trainer) / "samples" / f"step_{trainer.global_step:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        strip.save(out)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("samples", np.asarray(strip), trainer.global_step, dataformats="HWC")
        return out

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.at_start and trainer.is_global_zero:
            self.render(trainer, module)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero and self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.render(trainer, module)


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM/SIGUSR1 (cluster preemption), save `<dirpath>/preempted.ckpt` and stop cleanly.

    Resume with `--ckpt_path <dirpath>/preempted.ckpt` (or `last`). Lightning's SLURM environment
    handles SIGUSR1 requeueing itself; this covers torchrun/Kubernetes-style SIGTERM too.
    """

    def __init__(self, dirpath: str | None = None, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
        self.dirpath, self.signals, self._hit = dirpath, signals, False

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.signals:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self._hit = True

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        if self._hit:
            path = Path(self.dirpath or (_log_dir(trainer) / "checkpoints")) / "preempted.ckpt"
            trainer.save_checkpoint(path)
            log.warning("preempted: saved %s; resume with --ckpt_path %s", path, path)
            trainer.should_stop = True


class ExportOnTrainEnd(pl.Callback):
    """At the end of fit, write the model (EMA weights) in the pipeline's format to `dirpath` (default `<log_dir>/export`)."""

    def __init__(self, dirpath: str | None = None, use_ema: bool = True):
        self.dirpath, self.use_ema = dirpath, use_ema

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            out = module.export(self.dirpath or (_log_dir(trainer) / "export"), use_ema=self.use_ema)
            print(f"exported the trained model to {out} (lc4 colorize --model {out})", flush=True)
