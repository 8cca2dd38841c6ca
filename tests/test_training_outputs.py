"""Training outputs (issue 25, item 7): paths follow `--trainer.default_root_dir`, bounded checkpoint
retention in the SD1.5 configs, and the limit on unreadable training videos through `lc4 train`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytorch_lightning as pl
import yaml

from lc4.training.cli import main
from tests.test_training import (
    CONFIGS,
    TINY_MODEL,
    _write_video,
    load_ckpt,
    quick_trainer,
    synthetic_dm,
    tiny_config,
    tiny_module,
)

OUTPUT_KEYS = ("dirpath", "save_dir")


def _callbacks(cfg: dict) -> dict[str, dict]:
    return {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args") or {} for c in cfg["trainer"].get("callbacks", [])}


def test_train_configs_name_their_folder_once() -> None:
    """Only `trainer.default_root_dir` names the run's folder (scripts/train_demo.sh reads it)."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        root = cfg["trainer"]["default_root_dir"]
        assert root.startswith("runs/"), path
        assert "logger" not in cfg["trainer"], path
        for name, args in _callbacks(cfg).items():
            assert not set(args) & set(OUTPUT_KEYS), (path.name, name, args)


def test_shipped_config_outputs_follow_default_root_dir(tmp_path: Path, monkeypatch) -> None:
    """configs/train/tiny_stage1.yaml with another --trainer.default_root_dir: checkpoints, preemption
    folder, export, logs, samples and config all land there; `--ckpt_path last` finds the checkpoint;
    `--export_to` adds an export."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # where the config's own runs/tiny_stage1 would be written
    cfg = yaml.safe_load((CONFIGS / "tiny_stage1.yaml").read_text())
    cfg["model"]["model"] = TINY_MODEL
    cfg["data"].update(synthetic={"num_videos": 8, "num_shapes": [1, 2]}, val_synthetic=None, num_frames=2,
                       batch_size=2)
    t = cfg["trainer"]
    for key in ("val_check_interval", "check_val_every_n_epoch"):
        t.pop(key)
    t.update(max_steps=2, limit_val_batches=0, enable_progress_bar=False)
    for callback in t["callbacks"]:  # step intervals only; no paths are added
        name = callback["class_path"].rsplit(".", 1)[-1]
        if name == "ModelCheckpoint":
            callback["init_args"].update(every_n_train_steps=1)
        elif name == "SampleLogger":
            callback["init_args"].update(every_n_steps=2, num_inference_steps=2)
    config = tmp_path / "tiny_stage1.yaml"
    config.write_text(yaml.safe_dump(cfg))
    root = tmp_path / "elsewhere"
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root)]) == 0
    assert not (cwd / "runs").exists()
    ckpts = sorted(p.name for p in (root / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt", "last.ckpt"]
    assert (root / "export" / "model_index.json").is_file()
    version = root / "lightning_logs" / "version_0"
    assert (version / "metrics.csv").is_file() and (version / "config.yaml").is_file()
    assert sorted(p.name for p in (version / "samples").glob("*.png")) == ["step_000000.png", "step_000002.png"]
    # a second run resumes from <root>/checkpoints/last.ckpt and logs to a new version
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root),
                 "--trainer.max_steps", "3", "--ckpt_path", "last", "--export_to", str(tmp_path / "extra")]) == 0
    assert load_ckpt(root / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert (tmp_path / "extra" / "model_index.json").is_file()  # --export_to: one more export
    assert (root / "lightning_logs" / "version_1" / "config.yaml").is_file()
    assert not (cwd / "runs").exists()


def test_preemption_and_export_default_to_default_root_dir(tmp_path: Path) -> None:
    from lc4.training.callbacks import ExportOnTrainEnd, PreemptionCheckpoint

    trainer = quick_trainer(tmp_path / "run", 1)
    preempt, export = PreemptionCheckpoint(), ExportOnTrainEnd()
    preempt.setup(trainer, None, "fit")
    export.setup(trainer, None, "fit")
    assert preempt.path == tmp_path / "run" / "checkpoints" / "preempted.ckpt"
    assert export._dir == tmp_path / "run" / "export"
    explicit = PreemptionCheckpoint(dirpath=str(tmp_path / "x"))
    explicit.setup(trainer, None, "fit")
    assert explicit.path == tmp_path / "x" / "preempted.ckpt"


def test_sd15_configs_keep_the_newest_few_checkpoints(tmp_path: Path) -> None:
    """~15 GB per stage-1 checkpoint: the full-size configs keep last.ckpt and the 3 newest step
    checkpoints (by `step`), not every one; the same ModelCheckpoint settings, run for 5 steps."""
    for path in sorted(CONFIGS.glob("*sd15*.yaml")):
        args = _callbacks(yaml.safe_load(path.read_text()))["ModelCheckpoint"]
        assert args["save_last"] is True and args["monitor"] == "step" and args["mode"] == "max", path
        assert 1 <= args["save_top_k"] <= 5, path
        keep = args["save_top_k"]
    callback = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=1,
                                            save_last=True, save_top_k=keep, monitor="step", mode="max")
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", devices=1, logger=False, callbacks=[callback],
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(tiny_module(stage=2), synthetic_dm(videos=8))
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == sorted(
        ["last.ckpt"] + [f"step={s}.ckpt" for s in range(5 - keep + 1, 6)])


def test_too_many_unreadable_videos_stop_lc4_train_with_one_line(tmp_path: Path, capsys, caplog) -> None:
    """22 entries, 3 unreadable (14 %): over the default 5 % the run stops with one line naming them;
    with --data.max_unreadable_fraction 0.2 it trains (one step here), skipping them."""
    media = tmp_path / "media"
    media.mkdir()
    _write_video(media / "a.mp4", 0)
    _write_video(media / "b.mp4", 1)
    (media / "broken.mp4").write_bytes(b"\0" * 3000)
    rows = [f"{'ab'[i % 2]}.mp4,clip {i}" for i in range(19)] + ["broken.mp4,bad"] * 3
    manifest = media / "train.csv"
    manifest.write_text("video,caption\n" + "\n".join(rows) + "\n")
    cfg = tiny_config(tmp_path / "run", steps=10, batch=4, frames=2, every=100,
                      data={"synthetic": None, "train_manifest": str(manifest), "stride": 1})
    from lc4.cli import main as lc4_main

    with caplog.at_level(logging.WARNING):
        assert lc4_main(["train", "fit", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert re.match(r"lc4 train: error: [23] of the 2\d videos tried so far are unreadable", last), err
    assert "broken.mp4" in last and "max_unreadable_fraction" in last and "Traceback" not in err
    assert lc4_main(["train", "fit", "--config", str(cfg), "--data.max_unreadable_fraction", "0.2",
                     "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run2")]) == 0
