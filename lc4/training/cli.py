"""`lc4 train` / `python train.py`: LightningCLI over `LC4Module` and `VideoDataModule`.

    python train.py fit --config configs/train/stage1_sd15.yaml --trainer.devices 8
    python train.py fit --config configs/train/tiny_stage1.yaml --trainer.accelerator cpu

Every option can be overridden on the command line; the resolved config is saved beside the
checkpoints (`<log_dir>/config.yaml`). `lc4 export CKPT OUT` turns a checkpoint into a model folder.
`seed_everything` also seeds the module's step noise (`model.seed`) and the data order (`data.seed`).

Outputs follow `--trainer.default_root_dir` (`<root>`): without a `trainer.logger` the run logs to a
`CSVLogger` in `<root>` (`<root>/lightning_logs/version_N/`), a `ModelCheckpoint` without `dirpath`
writes to `<root>/checkpoints`, and lc4's callbacks default to `<root>/checkpoints` and `<root>/export`.
"""

from __future__ import annotations

import os
import sys

from pytorch_lightning.cli import LightningCLI

from ..data.datamodule import VideoDataModule
from .module import LC4Module


def _int_seed(seed: object) -> int:
    """`seed_everything` may be true/false (Lightning then draws one); the module and data need an int."""
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


class LC4CLI(LightningCLI):
    """Adds `--export_to`, ties the seeds together, checks manifests before the model is built and
    roots the run's outputs in `trainer.default_root_dir`."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--export_to", default=None, help="after fit, also export the model here")
        parser.link_arguments("seed_everything", "model.seed", compute_fn=_int_seed)
        parser.link_arguments("seed_everything", "data.seed", compute_fn=_int_seed)

    def before_instantiate_classes(self) -> None:
        """Fail on a bad manifest (missing, empty, no `video` column, missing files) in seconds, not
        after minutes of loading SD1.5."""
        from ..data.manifest import load_manifest

        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        data = config.get("data") or {}
        for key in ("train_manifest", "val_manifest"):
            path = data.get(key)
            if path:
                load_manifest(path)

    def _subcommand_config(self, config) -> dict:
        return (config.get(self.subcommand) if self.subcommand else config) or {}

    def instantiate_trainer(self, **kwargs):
        """The trainer, with its outputs under `default_root_dir` (`use_root_dir_for_outputs`) and,
        with `--export_to`, an `ExportOnTrainEnd` to that folder (run on every rank, as FSDP needs)."""
        from pytorch_lightning.loggers import CSVLogger

        from .callbacks import ExportOnTrainEnd, use_root_dir_for_outputs

        trainer_config = self._subcommand_config(self.config_init).get("trainer") or {}
        if trainer_config.get("logger") is None and "logger" not in kwargs:
            kwargs["logger"] = CSVLogger(save_dir=trainer_config.get("default_root_dir") or os.getcwd())
        trainer = super().instantiate_trainer(**kwargs)
        use_root_dir_for_outputs(trainer)
        export_to = self._subcommand_config(self.config_init).get("export_to")
        if export_to and self.subcommand in (None, "fit"):
            trainer.callbacks.append(ExportOnTrainEnd(dirpath=export_to))
        return trainer


def main(argv: list[str] | None = None) -> int:
    """Run LightningCLI; user errors end in one line, not a traceback (LC4_DEBUG=1 shows it)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        LC4CLI(LC4Module, VideoDataModule, args=None if argv is None else list(argv), seed_everything_default=0,
               save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        print("lc4 train: interrupted; resume with --ckpt_path last", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("LC4_DEBUG"):
            raise
        print(f"lc4 train: error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0
