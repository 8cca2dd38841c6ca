"""Where a training step's time goes: the shares a shorter demo recipe can win back (issue 6).

Runs a training config through `LC4CLI` and Lightning for `--warmup` + `--steps` steps and splits
each measured step's wall time into: building the batch (data), the frozen text encoder
(`encode_prompt`), the frozen VAE encoder (`encode_frames`), E^lum (`encode_luminance`), the
UNet's forward (`predict_noise`), the rest of the forward (CMPF, losses, grounding), the backward
pass and the optimizer step with EMA. All shares come from the same steps of one run, so a load
change on the machine shifts them together; the printed ratios are what matter, not the seconds.

    python benchmarks/step_breakdown.py                          # the video stage (needs stage 1a's export)
    python benchmarks/step_breakdown.py --config configs/demo/demo60_stage0.yaml --steps 10
    python benchmarks/step_breakdown.py --config configs/demo/demo60_stage1.yaml --model.init_from lc4/assets/demo-model

Arguments it does not know go to the training CLI as config overrides.
"""

from __future__ import annotations

import argparse
import collections
import functools
import tempfile
import time

import pytorch_lightning as pl

TIMED_METHODS = ("encode_prompt", "encode_frames", "encode_luminance", "predict_noise")


class StepClock(pl.Callback):
    """Wall-clock seconds per step phase, from Lightning's hooks and the model's timed methods."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.totals, self.steps = warmup, collections.Counter(), 0
        self._marks: dict[str, float] = {}
        self._inside: collections.Counter = collections.Counter()

    def timed(self, name: str, method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._inside[name] += time.perf_counter() - start
        return wrapper

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        for name in TIMED_METHODS:
            setattr(module.model, name, self.timed(name, getattr(module.model, name)))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if "end" in self._marks:
            self._marks["data"] = now - self._marks["end"]
        self._marks["start"] = now
        self._inside.clear()

    def on_before_backward(self, trainer, module, loss) -> None:
        self._marks["forward_end"] = time.perf_counter()

    def on_after_backward(self, trainer, module) -> None:
        self._marks["backward_end"] = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now, m = time.perf_counter(), self._marks
        m["end"] = now
        if trainer.global_step <= self.warmup or "data" not in m:
            return
        forward = m["forward_end"] - m["start"]
        parts = dict(self._inside)
        parts["forward, other (CMPF, losses, grounding)"] = forward - sum(self._inside.values())
        parts["backward"] = m["backward_end"] - m["forward_end"]
        parts["optimizer + EMA"] = now - m["backward_end"]
        parts["data"] = m["data"]
        self.totals.update(parts)
        self.steps += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/demo/lc4_stage1_video.yaml")
    p.add_argument("--steps", type=int, default=20, help="measured steps")
    p.add_argument("--warmup", type=int, default=5, help="steps run before measuring")
    args, overrides = p.parse_known_args()
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1")

    from lc4.training.cli import LC4CLI
    from lc4.training.module import LC4Module
    from lc4.data.datamodule import VideoDataModule

    clock = StepClock(args.warmup)
    with tempfile.TemporaryDirectory() as root:
        cli = LC4CLI(LC4Module, VideoDataModule, run=False, seed_everything_default=0,
                     auto_configure_optimizers=False, args=[
                "--config", args.config, "--trainer.max_steps", str(args.warmup + args.steps),
                "--trainer.callbacks", "null", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root, *overrides])
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, cli.datamodule)
    total = sum(clock.totals.values())
    print(f"{args.config}: {clock.steps} steps, {total / clock.steps:.3f} s a step")
    for name, seconds in clock.totals.most_common():
        print(f"  {name:<42} {seconds / clock.steps:7.3f} s  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()
