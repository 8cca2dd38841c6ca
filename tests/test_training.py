"""Training side (issue 4): CLI runs, DDP sharding, exact resume, stage gating, EMA, mixed precision,
callbacks, export, data errors, and that the tiny model learns.

Runs are in-process (`lc4.training.cli.main`) on the tiny configs at 32 px, except DDP, which needs
two real processes (`python train.py` as a subprocess). Timings go to `docs/training.md`.
"""

from __future__ import annotations

import copy
import csv
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import Dataset

from lc4.data.datamodule import EpochShardSampler, ResumableLoader, VideoDataModule
from lc4.models.lc4 import LC4Model
from lc4.training.callbacks import PreemptionCheckpoint, SampleLogger
from lc4.training.cli import LC4CLI, main
from lc4.training.export import export_checkpoint
from lc4.training.losses import grey_input
from lc4.training.module import PARTS, STAGE_PARTS, LC4Module, step_seed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "train"
TINY_MODEL = str(ROOT / "configs" / "model" / "tiny.yaml")
N_STEPS = 6  # reference run length; 8 clips / batch 2 = 4 batches per epoch
STAGE_DEFAULT = {stage: parts[0] for stage, parts in STAGE_PARTS.items()}


# --------------------------------------------------------------------------- helpers


def tiny_config(tmp: Path, stage: int = 1, *, steps: int = N_STEPS, videos: int = 8, frames: int = 4,
                batch: int = 2, sample_logger: bool = False, every: int = 1, data: dict | None = None,
                model: dict | None = None, trainer: dict | None = None) -> Path:
    """A copy of configs/train/tiny_stage{stage}.yaml whose outputs all go under `tmp`."""
    cfg = yaml.safe_load((CONFIGS / f"tiny_stage{stage}.yaml").read_text())
    cfg["model"]["model"] = TINY_MODEL
    cfg["data"].update(synthetic={"num_videos": videos, "num_shapes": [1, 2]}, val_synthetic=None,
                       num_frames=frames, batch_size=batch)
    cfg["data"].update(data or {})
    cfg["model"].update(model or {})
    t = cfg["trainer"]
    for key in ("val_check_interval", "check_val_every_n_epoch"):
        t.pop(key, None)
    t.update(default_root_dir=str(tmp), max_steps=steps, log_every_n_steps=1, enable_progress_bar=False,
             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    t.pop("logger", None)  # lc4 train's default: a CSVLogger in default_root_dir
    callbacks = []
    for cb in t["callbacks"]:
        name = cb["class_path"].rsplit(".", 1)[-1]
        cb = copy.deepcopy(cb)
        if name == "ModelCheckpoint":
            cb["init_args"] = {"dirpath": str(tmp / "ckpt"), "filename": "{step}", "every_n_train_steps": every,
                               "save_last": True, "save_top_k": -1}
        elif name == "ExportOnTrainEnd":
            cb["init_args"] = {"dirpath": str(tmp / "export")}
        elif name == "SampleLogger":
            if not sample_logger:
                continue
            cb["init_args"] = {"every_n_steps": 1, "num_inference_steps": 2}
        elif name == "PreemptionCheckpoint":
            cb["init_args"] = {"dirpath": str(tmp / "ckpt")}
        callbacks.append(cb)
    t["callbacks"] = callbacks
    t.update(trainer or {})
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train(config: Path, *extra: str) -> int:
    return main(["fit", "--config", str(config), *extra])


def load_ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=0, atol=atol, msg=k)


def synthetic_dm(videos: int = 4, frames: int = 4, batch: int = 2, **kw: Any) -> VideoDataModule:
    return VideoDataModule(synthetic={"num_videos": videos, "num_shapes": [1, 2]}, num_frames=frames,
                           resolution=32, batch_size=batch, num_workers=0, **kw)


def quick_trainer(tmp: Path, steps: int, callbacks: list | None = None, **kw: Any) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp),
                      callbacks=callbacks or [], num_sanity_val_steps=0, **kw)


def tiny_module(stage: int = 1, **kw: Any) -> LC4Module:
    kw.setdefault("lr", 1e-3)
    kw.setdefault("betas", (0.9, 0.999))
    return LC4Module(stage=stage, model=TINY_MODEL, **kw)


def part_states(model: LC4Model) -> dict[str, dict[str, torch.Tensor]]:
    return {p: {k: v.detach().clone() for k, v in getattr(model, p).state_dict().items()}
            for p in PARTS if getattr(model, p) is not None}


def read_metric(log_root: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric from the CSVLogger's metrics.csv."""
    (metrics,) = log_root.glob("lightning_logs/version_*/metrics.csv")
    with open(metrics) as fh:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(fh) if r.get(name)]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """Tiny stage 1, 6 steps, a checkpoint after every step, export at the end."""
    root = tmp_path_factory.mktemp("reference")
    assert train(tiny_config(root)) == 0
    return root


# --------------------------------------------------------------------------- configs and seeds


@pytest.mark.parametrize("name", sorted(str(p.relative_to(ROOT / "configs"))
                                         for d in ("train", "demo") for p in (ROOT / "configs" / d).glob("*.yaml")))
def test_shipped_configs_parse(name: str, capsys) -> None:
    assert main(["fit", "--config", str(ROOT / "configs" / name), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    stage = int(name.split("stage")[1][0])
    assert printed["model"]["stage"] == stage
    assert "seed" not in printed["model"]  # linked to seed_everything


def test_seed_everything_seeds_the_step_noise_and_the_data_order(tmp_path: Path) -> None:
    cli = LC4CLI(LC4Module, VideoDataModule, args=["--config", str(tiny_config(tmp_path)),
                                                   "--seed_everything", "7"], run=False)
    assert cli.model.hparams.seed == 7 and cli.datamodule.hparams.seed == 7


def test_step_seed_is_stable_and_distinct() -> None:
    seeds = {step_seed(0, s, m, r) for s in range(20) for m in range(2) for r in range(3)}
    assert len(seeds) == 120 and all(0 <= x < 2**63 for x in seeds)
    assert step_seed(0, 5, 1, 2) == step_seed(0, 5, 1, 2)  # no hash randomisation involved
    assert step_seed(1, 5, 1, 2) != step_seed(0, 5, 1, 2)


# --------------------------------------------------------------------------- resumable data order


class _KeyDataset(Dataset):
    """Item (index, epoch) → a number that names both, to see which sample each step got."""

    accepts_epoch_index = True

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key):
        index, epoch = key
        return {"x": torch.tensor([float(index + 100 * epoch)])}


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append([int(v) for v in batch["x"].flatten()])
        return ((self.w - batch["x"]) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _record(tmp: Path, steps: int, workers: int, ckpt: Path | None = None, save_every: int | None = None,
            limit: int | None = None):
    dm = VideoDataModule(synthetic={}, batch_size=3, num_workers=workers)  # 10 items: 4 batches, last short
    dm.train_dataset, dm.val_dataset = _KeyDataset(), None
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=tmp, filename="{step}", every_n_train_steps=save_every,
                                              save_top_k=-1)] if save_every else []
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=bool(save_every), callbacks=callbacks,
                         default_root_dir=str(tmp), limit_train_batches=limit)
    module = _Recorder()
    trainer.fit(module, dm, ckpt_path=ckpt)
    return module.seen, float(module.w)


@pytest.mark.parametrize("k,workers,limit", [(1, 0, None), (3, 0, None), (4, 0, None), (6, 0, None), (6, 1, None),
                                             (2, 0, 2), (3, 0, 2)])
def test_resume_replays_the_uninterrupted_batch_order(tmp_path: Path, k: int, workers: int, limit) -> None:
    """Stop after k steps (mid-epoch: 1, 3, 6; epoch end: 4; with 2-batch epochs: 2 end, 3 mid), resume:
    the same batches and the same weight as without the stop."""
    n = 10
    full, w_full = _record(tmp_path / "full", n, workers, limit=limit)
    first, _ = _record(tmp_path / "part", k, workers, save_every=k, limit=limit)
    second, w_resumed = _record(tmp_path / "resumed", n, workers, ckpt=tmp_path / "part" / f"step={k}.ckpt",
                                limit=limit)
    assert len(set(map(tuple, full))) == n  # every step saw a different batch: the check has teeth
    assert first + second == full
    assert w_resumed == w_full


def test_loader_state_round_trip_and_layout_change(caplog) -> None:
    dataset = _KeyDataset()
    sampler = EpochShardSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = ResumableLoader(dataset, batch_size=2, sampler=sampler, drop_last=True)
    loader.progress = lambda: (2, None)
    sampler.set_epoch(3)
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches_done": 2, "num_batches": 5, "epoch_batches": 5}
    fresh_sampler = EpochShardSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    fresh = ResumableLoader(dataset, batch_size=2, sampler=fresh_sampler, drop_last=True)
    fresh.load_state_dict(state)
    sampler.set_epoch(3)
    assert list(fresh_sampler) == list(sampler)[4:]  # epoch 3 without its first two batches
    assert len(list(fresh_sampler)) == 10  # the skip applies once
    fresh.load_state_dict({**state, "batches_done": 5})  # a finished epoch: the next one from its start
    assert fresh_sampler.epoch == 4 and len(list(fresh_sampler)) == 10
    fresh.load_state_dict({**state, "batches_done": 3, "epoch_batches": 3})  # limit_train_batches=3: finished
    assert fresh_sampler.epoch == 4 and len(list(fresh_sampler)) == 10
    with caplog.at_level(logging.WARNING, logger="lc4.data.datamodule"):
        fresh.load_state_dict({"epoch": 0, "batches_done": 4, "num_batches": 10})  # e.g. twice the GPUs before
    assert "same fraction" in caplog.text
    assert len(list(fresh_sampler)) == 10 - 2 * 2


# --------------------------------------------------------------------------- resume through the CLI


@pytest.mark.parametrize("k", [3, 4], ids=["mid-epoch", "epoch-end"])
def test_cli_resume_matches_uninterrupted_run(reference_run: Path, tmp_path: Path, k: int) -> None:
    ckpt = reference_run / "ckpt" / f"step={k}.ckpt"
    assert "lc4_ema" in load_ckpt(ckpt)
    assert train(tiny_config(tmp_path), "--ckpt_path", str(ckpt)) == 0
    ref, resumed = load_ckpt(reference_run / "ckpt" / f"step={N_STEPS}.ckpt"), load_ckpt(tmp_path / "ckpt" / "last.ckpt")
    assert resumed["global_step"] == ref["global_step"] == N_STEPS
    assert_same_tensors(resumed["state_dict"], ref["state_dict"], atol=1e-6)
    assert_same_tensors(resumed["lc4_ema"], ref["lc4_ema"], atol=1e-6)  # the EMA was restored, not restarted
    unet = {k: v for k, v in ref["state_dict"].items() if k.startswith("model.unet.")}
    start = load_ckpt(reference_run / "ckpt" / "step=1.ckpt")["state_dict"]
    assert any(not torch.equal(v, start[k]) for k, v in unet.items())  # training moved the weights


def test_ckpt_path_last_resumes_in_the_same_folder(reference_run: Path, tmp_path: Path) -> None:
    """The configs' fixed checkpoint folder is what lets `--ckpt_path last` find the previous run."""
    assert train(tiny_config(tmp_path), "--trainer.max_steps", "3") == 0
    assert train(tiny_config(tmp_path), "--ckpt_path", "last") == 0
    assert len(list(tmp_path.glob("lightning_logs/version_*"))) == 2  # a new log version, same checkpoints
    ref, resumed = load_ckpt(reference_run / "ckpt" / "last.ckpt"), load_ckpt(tmp_path / "ckpt" / "last.ckpt")
    assert resumed["global_step"] == N_STEPS
    assert_same_tensors(resumed["state_dict"], ref["state_dict"], atol=1e-6)


def test_preemption_saves_stops_and_resumes_exactly(reference_run: Path, tmp_path: Path) -> None:
    class Signal(pl.Callback):  # a real SIGTERM to this process after the second step
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    cli = LC4CLI(LC4Module, VideoDataModule, args=["--config", str(tiny_config(tmp_path / "a"))], run=False,
                 save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    cli.trainer.callbacks.insert(0, Signal())
    previous = signal.getsignal(signal.SIGTERM)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored after fit
    preempted = tmp_path / "a" / "ckpt" / "preempted.ckpt"
    assert preempted.is_file() and load_ckpt(preempted)["global_step"] == 2
    assert cli.trainer.global_step == 2 and not (tmp_path / "a" / "export").exists()  # stopped, not exported
    assert train(tiny_config(tmp_path / "b"), "--ckpt_path", str(preempted)) == 0
    ref, resumed = load_ckpt(reference_run / "ckpt" / "last.ckpt"), load_ckpt(tmp_path / "b" / "ckpt" / "last.ckpt")
    assert_same_tensors(resumed["state_dict"], ref["state_dict"], atol=1e-6)
    assert_same_tensors(resumed["lc4_ema"], ref["lc4_ema"], atol=1e-6)


@pytest.mark.parametrize("requeue", [True, False])
def test_preemption_leaves_sigusr1_to_lightning_under_slurm_requeue(tmp_path: Path, requeue: bool) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    trainer = quick_trainer(tmp_path, 1, plugins=[SLURMEnvironment(auto_requeue=requeue)])
    callback = PreemptionCheckpoint()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    callback.on_train_start(trainer, None)
    try:
        assert signal.getsignal(signal.SIGTERM) == callback.handler
        assert (signal.getsignal(signal.SIGUSR1) == callback.handler) == (not requeue)
    finally:
        callback.on_train_end(trainer, None)
    assert {s: signal.getsignal(s) for s in before} == before


# --------------------------------------------------------------------------- export and init_from


def _folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        out.update({f"{f.parent.name}.{k}": v for k, v in load_file(f).items()})
    return out


def test_lc4_export_equals_the_end_of_training_export(reference_run: Path, tmp_path: Path) -> None:
    from lc4.cli import main as lc4_main

    out = tmp_path / "exported"
    assert lc4_main(["export", str(reference_run / "ckpt" / "last.ckpt"), str(out)]) == 0
    end_of_run = _folder_tensors(reference_run / "export")
    assert_same_tensors(_folder_tensors(out), end_of_run)
    # EMA by default: the raw weights differ from the exported ones
    raw = export_checkpoint(reference_run / "ckpt" / "last.ckpt", tmp_path / "raw", use_ema=False)
    raw_unet = {k: v for k, v in _folder_tensors(raw).items() if k.startswith("unet.")}
    assert any(not torch.equal(v, end_of_run[k]) for k, v in raw_unet.items())
    ema = load_ckpt(reference_run / "ckpt" / "last.ckpt")["lc4_ema"]
    name = next(n for n in ema if n.startswith("unet.lum_injection."))
    torch.testing.assert_close(end_of_run["unet." + name.removeprefix("unet.")], ema[name], rtol=0, atol=0)


def test_exported_folder_colorizes_through_the_cli(reference_run: Path, tmp_path: Path) -> None:
    from lc4.cli import main as lc4_main
    from lc4.data.synthetic import SyntheticVideoDataset

    video = SyntheticVideoDataset(1, num_frames=4, size=32, num_shapes=(1, 1)).video(0)
    np.save(tmp_path / "clip.npy", video.rgb)
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for i, f in enumerate(video.rgb):
        Image.fromarray(f).save(frames / f"{i:05d}.png")
    out = tmp_path / "out"
    rc = lc4_main(["colorize", str(frames), "--model", str(reference_run / "export"), "--prompt", video.caption,
                   "--steps", "2", "--resolution", "32", "--format", "png", "-o", str(out), "--quiet"])
    assert rc == 0
    written = sorted(out.rglob("*.png"))
    assert len(written) == 4 and Image.open(written[0]).size == (32, 32)


def test_init_from_a_checkpoint_loads_its_ema_weights(reference_run: Path) -> None:
    ckpt = reference_run / "ckpt" / "last.ckpt"
    module = tiny_module(stage=2, init_from=str(ckpt))
    exported = LC4Model.from_pretrained(reference_run / "export")
    assert_same_tensors(module.model.unet.state_dict(), exported.unet.state_dict())
    assert_same_tensors(module.model.vae.state_dict(), exported.vae.state_dict())
    assert module.train_parts == ["cmpf"]


# --------------------------------------------------------------------------- stage gating


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_only_the_stage_parts_train(stage: int, tmp_path: Path, capsys) -> None:
    module = tiny_module(stage=stage)
    trained = {0: "lum_encoder", 1: "unet", 2: "cmpf"}[stage]
    before = part_states(module.model)
    checks: list[str] = []

    class Probe(pl.Callback):
        def on_after_backward(self, trainer, pl_module):
            for part in PARTS:
                m = getattr(pl_module.model, part)
                if part == trained:
                    assert m.training and any(p.grad is not None for p in m.parameters())
                else:
                    assert not any(x.training for x in m.modules()), f"{part} is in train mode"
                    assert all(p.grad is None and not p.requires_grad for p in m.parameters()), part
            checks.append("ok")

    quick_trainer(tmp_path, 2, [Probe()]).fit(module, synthetic_dm(frames=2 if stage == 0 else 4))
    assert checks == ["ok", "ok"]
    after = part_states(module.model)
    for part in before:
        same = all(torch.equal(before[part][k], after[part][k]) for k in before[part])
        assert same == (part != trained), f"stage {stage}: {part} {'changed' if not same else 'did not change'}"

    # the printed report: its counts against the model's own per-part inventory
    report = capsys.readouterr().out
    counts = module.model.parameter_counts()
    totals = {"vae": counts["vae"], "lum_encoder": counts["lum_encoder"] + counts["decoder_skips"],
              "unet": counts["unet_sd15"] + counts["temporal_layers"] + counts["lum_injection"],
              "text_encoder": counts["text_encoder"], "cmpf": counts["cmpf"]}
    optimised = sum(p.numel() for g in module.trainer.optimizers[0].param_groups for p in g["params"])
    kept = sum(p.numel() for n in module.unreached for p in module.model.get_submodule(n).parameters())
    assert (kept > 0) == (stage == 0)  # stage 0 never uses E^lum's latent head; stages 1, 2 reach all
    for part, total in totals.items():
        line = next(ln for ln in report.splitlines() if ln.split() and ln.split()[0] == part)
        train_n, frozen_n = (int(x.replace(",", "")) for x in (line.split()[2], line.split()[4]))
        assert (train_n, frozen_n) == ((total - kept, kept) if part == trained else (0, total))
    assert optimised == totals[trained] - kept


def _stage_loss(module: LC4Module, pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
    from lc4.training.losses import denoising_loss, reconstruction_loss

    if module.hparams.stage == 0:
        return reconstruction_loss(module.model, pixels)
    return denoising_loss(module.model, pixels, captions, module.noise_scheduler, caption_dropout=0.0,
                          generator=torch.Generator().manual_seed(0), use_cmpf=module.use_cmpf)


@pytest.mark.parametrize("stage,parts,extra", [(0, ["vae", "lum_encoder"], {}), (1, ["unet", "lum_encoder"], {}),
                                               (1, ["unet", "cmpf"], {"use_cmpf": True}),
                                               (2, ["unet", "lum_encoder", "cmpf"], {})])
def test_trained_weights_are_exactly_those_the_stage_loss_reaches(stage: int, parts: list[str], extra: dict) -> None:
    """The UNREACHED table against autograd: DDP fails on trained weights that get no gradient."""
    from lc4.data.synthetic import SyntheticVideoDataset

    ds = SyntheticVideoDataset(2, num_frames=4, size=32, num_shapes=(1, 1))
    pixels, captions = torch.stack([ds[i]["pixel_values"] for i in range(2)]), [ds[i]["caption"] for i in range(2)]
    module = tiny_module(stage=stage, train_parts=parts, **extra)
    trained = {n for n, _ in module.trainable_named_parameters()}
    probe = tiny_module(stage=stage, train_parts=parts, **extra)
    probe.model.requires_grad_(True)
    _stage_loss(probe, pixels, captions).backward()
    reached = {n for n, p in probe.model.named_parameters() if p.grad is not None and n.split(".")[0] in parts}
    assert trained == reached


@pytest.mark.parametrize("stage,part", [(0, "unet"), (1, "cmpf"), (1, "text_encoder"), (2, "vae")])
def test_training_a_part_the_stage_never_reaches_is_an_error(stage: int, part: str) -> None:
    with pytest.raises(ValueError, match=f"{part} gets no gradient in stage {stage}"):
        tiny_module(stage=stage, train_parts=[STAGE_DEFAULT[stage], part])


def test_stage1_trains_cmpf_only_when_it_conditions_on_it() -> None:
    with pytest.raises(ValueError, match="use_cmpf: true"):
        tiny_module(stage=1, train_parts=["unet", "cmpf"])
    assert tiny_module(stage=1, train_parts=["unet", "cmpf"], use_cmpf=True).use_cmpf
    assert not tiny_module(stage=1).use_cmpf and tiny_module(stage=2).use_cmpf
    with pytest.raises(ValueError, match="stage 1 uses CMPF"):
        tiny_module(stage=1, use_cmpf=True, model_config={"cmpf": {"enabled": False}})
    with pytest.raises(ValueError, match="use_cmpf is for stages 1 and 2"):
        tiny_module(stage=0, use_cmpf=True)
    with pytest.raises(ValueError, match="leave use_cmpf unset"):
        tiny_module(stage=2, use_cmpf=False)


def test_lr_schedule_factors_and_the_trainer_steps_them(tmp_path: Path) -> None:
    from lc4.training.module import lr_factor_schedule

    cosine = lr_factor_schedule("cosine", total_steps=110, warmup_steps=10, min_ratio=0.2)
    assert [cosine(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # linear warm-up
    assert cosine(10) == pytest.approx(1.0) and cosine(60) == pytest.approx(0.6) and cosine(110) == pytest.approx(0.2)
    assert cosine(500) == pytest.approx(0.2)  # held at the floor past max_steps
    assert all(cosine(s) >= cosine(s + 1) for s in range(10, 200))
    assert lr_factor_schedule("constant", 100)(77) == 1.0
    held = lr_factor_schedule("cosine", total_steps=110, warmup_steps=10, min_ratio=0.2, decay_steps=50)
    assert [held(s) for s in (9, 30, 60)] == pytest.approx([1.0, 1.0, 1.0])  # warm-up, then held until step 60
    assert held(85) == pytest.approx(0.6) and held(110) == pytest.approx(0.2)
    assert lr_factor_schedule("cosine", 100, 0, 0.5, decay_steps=1000)(50) == lr_factor_schedule("cosine", 100, 0, 0.5)(50)
    with pytest.raises(ValueError, match="decay_steps"):
        tiny_module(stage=1, lr_schedule="constant", decay_steps=10)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        tiny_module(stage=1, lr_schedule="linear")
    module = tiny_module(stage=1, lr=1e-3, lr_schedule="cosine", warmup_steps=1, min_lr_ratio=0.5)
    seen: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    quick_trainer(tmp_path, 4, [Record()]).fit(module, datamodule=synthetic_dm())
    expected = lr_factor_schedule("cosine", 4, 1, 0.5)
    assert seen == pytest.approx([1e-3 * expected(s) for s in range(4)])


def test_chroma_weight_adds_the_lab_ab_l1() -> None:
    from lc4.color import rgb_to_lab
    from lc4.training.losses import chroma, reconstruction_loss

    rgb = torch.rand(2, 3, 8, 8) * 2 - 1
    lab = rgb_to_lab((rgb + 1) / 2, channel_dim=1)
    torch.testing.assert_close(chroma(rgb), lab[:, 1:] / 100)
    module = tiny_module(stage=0, train_parts=["lum_encoder"])
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        base = reconstruction_loss(module.model, pixels)
        weighted = reconstruction_loss(module.model, pixels, chroma_weight=2.0)
        lum = module.model.encode_luminance(grey_input(pixels))
        latents = module.model.vae.encode(pixels).latent_dist.mode() * module.model.vae.config.scaling_factor
        recon = module.model.decode(latents, lum).float()
    torch.testing.assert_close(weighted - base, 2.0 * (chroma(recon) - chroma(pixels)).abs().mean())
    with pytest.raises(ValueError, match="chroma_weight must be >= 0"):
        tiny_module(stage=0, chroma_weight=-1.0)


def test_posterior_logvar_init_starts_a_near_deterministic_vae() -> None:
    """The encoder's log-variance head outputs the set constant, the mean head is untouched, and
    a sample then sits within a few std of the mean (at diffusers' default the std is about 1)."""
    default = tiny_module(stage=0, train_parts=["vae", "lum_encoder"])
    module = tiny_module(stage=0, train_parts=["vae", "lum_encoder"], posterior_logvar_init=-6.0)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        dist = module.model.vae.encode(pixels).latent_dist
        ref = default.model.vae.encode(pixels).latent_dist
    torch.testing.assert_close(dist.logvar, torch.full_like(dist.logvar, -6.0))
    torch.testing.assert_close(dist.mean, ref.mean)  # same seed, same mean head
    assert ref.std.mean() > 0.5 and dist.std.max() < 0.06
    noise = dist.sample(torch.Generator().manual_seed(0)) - dist.mean
    assert noise.abs().max() < 6 * 0.05
    with pytest.raises(ValueError, match="add vae to train_parts"):
        tiny_module(stage=0, posterior_logvar_init=-6.0)


LATENT_HEAD_ONLY = ["lum_encoder.encoder.conv_in", "lum_encoder.encoder.down_blocks", "lum_encoder.encoder.mid_block"]


def test_frozen_modules_train_only_the_latent_head_of_e_lum(tmp_path: Path) -> None:
    """Stage 1 with E^lum's latent head trained: the rest of E^lum (its decoder skips' input) stays put."""
    module = tiny_module(stage=1, train_parts=["unet", "lum_encoder"], frozen_modules=LATENT_HEAD_ONLY)
    trained = {n.split(".", 1)[1] for n, _ in module.trainable_named_parameters() if n.startswith("lum_encoder.")}
    assert trained and all(n.startswith(("encoder.conv_norm_out.", "encoder.conv_out.")) for n in trained)
    assert "frozen_modules" in module.parameter_report()
    before = {k: v.clone() for k, v in module.model.lum_encoder.state_dict().items()}
    quick_trainer(tmp_path, 2).fit(module, datamodule=synthetic_dm())
    after = module.model.lum_encoder.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("encoder.conv_norm_out.", "encoder.conv_out.")) for k in changed)


@pytest.mark.parametrize("names,match", [(["unet"], "not part.submodule"), (["cmpf.blocks"], "not part.submodule"),
                                         (["lum_encoder.encoder.nope"], "has no submodule 'encoder.nope'"),
                                         (["lum_encoder.encoder", "lum_encoder.skip_convs"], "nothing of lum_encoder")])
def test_frozen_modules_must_name_a_submodule_of_a_trained_part(names: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_module(stage=1, train_parts=["unet", "lum_encoder"], frozen_modules=names)


def test_stage2_needs_cmpf_and_parts_must_exist() -> None:
    with pytest.raises(ValueError, match="cmpf.enabled: false"):
        tiny_module(stage=2, model_config={"cmpf": {"enabled": False}})
    with pytest.raises(ValueError, match="unknown train_parts"):
        tiny_module(stage=1, train_parts=["unet", "decoder"])
    with pytest.raises(ValueError, match="stage must be 0, 1 or 2"):
        tiny_module(stage=3)


# --------------------------------------------------------------------------- EMA, accumulation, clipping


def test_ema_follows_its_recursion_once_per_optimizer_step(tmp_path: Path) -> None:
    decay = 0.5
    module = tiny_module(stage=2, ema_decay=decay)
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snap(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step > len(snapshots):
                snapshots.append({n: p.detach().clone() for n, p in pl_module.trainable_named_parameters()})

    trainer = quick_trainer(tmp_path, 3, [Snap()], accumulate_grad_batches=2)
    trainer.fit(module, synthetic_dm(videos=8))
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 6 and len(snapshots) == 3
    expected = dict(snapshots[0])
    for snap in snapshots[1:]:
        expected = {n: decay * expected[n] + (1 - decay) * snap[n] for n in expected}
    assert_same_tensors(module.ema_state_dict(), expected, atol=1e-6)


def test_resumed_ema_follows_its_parameters_to_their_device() -> None:
    """Lightning restores a checkpoint (on_load_checkpoint) before it moves the module to the GPU; the
    EMA restored on the CPU must follow the parameters, not mix devices at the next update. The `meta`
    device stands in for the GPU here."""
    decay = 0.5
    module = tiny_module(stage=2, ema_decay=decay)
    saved = {n: p.detach().clone() + 1.0 for n, p in module.trainable_named_parameters()}
    module.on_load_checkpoint({"lc4_ema": saved, "state_dict": {}})  # restore first, on the CPU ...
    assert {v.device.type for v in module.ema_state_dict().values()} == {"cpu"}
    module.to("meta")  # ... then Lightning's move to the device
    module.update_ema()
    ema = module.ema_state_dict()
    assert ema.keys() == saved.keys()
    assert {v.device.type for v in ema.values()} == {"meta"} and {v.dtype for v in ema.values()} == {torch.float32}
    # the recursion itself, on the CPU: a restored EMA moved by align_ema, then one update
    module = tiny_module(stage=2, ema_decay=decay)
    module.on_load_checkpoint({"lc4_ema": {n: v.half() for n, v in saved.items()}, "state_dict": {}})
    module.align_ema()
    assert {v.dtype for v in module.ema_state_dict().values()} == {torch.float32}
    module.update_ema()
    expected = {n: decay * saved[n].half().float() + (1 - decay) * p.detach()
                for n, p in module.trainable_named_parameters()}
    assert_same_tensors(module.ema_state_dict(), expected, atol=1e-6)
    module.to("meta")
    module.align_ema()  # at the start of fit, after the move
    assert {v.device.type for v in module.ema_state_dict().values()} == {"meta"}


def test_accumulation_and_clipping_reach_the_trainer(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, steps=2, trainer={"accumulate_grad_batches": 2, "gradient_clip_val": 1e-3})
    cli = LC4CLI(LC4Module, VideoDataModule, args=["--config", str(cfg)], run=False,
                 save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    assert cli.trainer.accumulate_grad_batches == 2 and cli.trainer.gradient_clip_val == 1e-3
    norms: dict[str, list[float]] = {"before": [], "after": []}

    def grad_norm(module: LC4Module) -> float | None:
        grads = [p.grad.norm() for _, p in module.trainable_named_parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(grads))) if grads else None

    class Probe(pl.Callback):  # Lightning clips after on_before_optimizer_step; the step leaves .grad alone,
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # so the clipped gradients are
            norms["before"].append(grad_norm(pl_module))  # still there at the next zero_grad / at the end

        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            if (norm := grad_norm(pl_module)) is not None:  # also called once before the first backward
                norms["after"].append(norm)

        def on_train_end(self, trainer, pl_module):
            norms["after"].append(grad_norm(pl_module))

    cli.trainer.callbacks.append(Probe())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2
    assert cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 4  # 2 batches per step
    assert len(norms["after"]) == 2 and all(b > 1e-3 for b in norms["before"])
    assert all(a <= 1e-3 * 1.001 for a in norms["after"])


# --------------------------------------------------------------------------- mixed precision


def test_bf16_mixed_step_keeps_frozen_weights_exact(tmp_path: Path) -> None:
    module = tiny_module(stage=1)
    original = part_states(module.model)
    trainer = quick_trainer(tmp_path, 1, precision="bf16-mixed")
    trainer.fit(module, synthetic_dm())
    assert module.model.vae.dtype == module.model.text_encoder.dtype == torch.bfloat16
    assert module.model.lum_encoder.dtype == module.model.cmpf.dtype == torch.bfloat16
    assert module.model.unet.dtype == torch.float32
    trainer.save_checkpoint(tmp_path / "bf16.ckpt")
    state = load_ckpt(tmp_path / "bf16.ckpt")["state_dict"]
    for part in ("vae", "text_encoder", "lum_encoder", "cmpf"):
        saved = {k.removeprefix(f"model.{part}."): v for k, v in state.items() if k.startswith(f"model.{part}.")}
        assert_same_tensors({k: v for k, v in saved.items() if v.is_floating_point()},
                            {k: v for k, v in original[part].items() if v.is_floating_point()})
        assert all(v.dtype == torch.float32 for v in saved.values() if v.is_floating_point())
    out = module.export(tmp_path / "export")
    exported = LC4Model.from_pretrained(out)
    assert_same_tensors(exported.vae.state_dict(), original["vae"])
    assert_same_tensors(exported.text_encoder.state_dict(), original["text_encoder"])
    assert module.model.vae.dtype == torch.bfloat16  # back to the working dtype after the export


# --------------------------------------------------------------------------- sample pictures


@pytest.mark.parametrize("stage", [0, 1])
def test_sample_logger_writes_pngs(stage: int, tmp_path: Path) -> None:
    from PIL import Image

    module = tiny_module(stage=stage)
    logger = SampleLogger(every_n_steps=1, num_inference_steps=2)
    quick_trainer(tmp_path, 1, [logger]).fit(module, synthetic_dm(frames=2 if stage == 0 else 4))
    pictures = sorted((tmp_path / "samples").glob("step_*.png"))
    assert [p.name for p in pictures] == ["step_000000.png", "step_000001.png"]
    img = np.asarray(Image.open(pictures[-1]).convert("RGB")).astype(int)
    assert img.shape[0] >= 3 * 64  # grey / ours / truth rows of 64 px
    assert all(not m.training for m in module.model.vae.modules())  # frozen parts back in eval mode
    spread = np.ptp(img, axis=2)  # 0 on grey pixels
    assert spread[: img.shape[0] // 3].max() <= 2 and spread[-img.shape[0] // 3:].max() > 20  # grey row, colour row


# --------------------------------------------------------------------------- data errors


def _write_video(path: Path, seed: int, n: int = 12, size: int = 40) -> Path:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for i in range(n):
            frame = np.roll(base, i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    _write_video(root / "a.mp4", 0)
    _write_video(root / "b.mp4", 1)
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    return root


def test_corrupt_video_is_skipped_warned_and_counted(media: Path, tmp_path: Path, caplog) -> None:
    manifest = media / "train.csv"
    manifest.write_text("video,caption\na.mp4,a red square\nbroken.mp4,a blue circle\nb.mp4,a green car\n")
    cfg = tiny_config(tmp_path, steps=3, batch=1, every=3,
                      data={"synthetic": None, "train_manifest": str(manifest), "stride": 1})
    with caplog.at_level(logging.WARNING):
        assert train(cfg) == 0  # one whole epoch: 3 clips, batch 1
    warnings = [r.getMessage() for r in caplog.records if "skipping unreadable video" in r.getMessage()]
    assert len(warnings) == 1 and "broken.mp4" in warnings[0]
    assert any("skipped 1 unreadable video" in r.getMessage() for r in caplog.records)
    assert read_metric(tmp_path, "data/skipped_videos")[-1][1] == 1.0
    assert (tmp_path / "export" / "model_index.json").is_file()


@pytest.mark.parametrize("content,words", [
    ("", "empty manifest"),
    ("video,caption\n", "empty manifest"),
    ("path,caption\na.mp4,x\n", "missing column 'video'"),
    ("video,caption\nmissing.mp4,x\n", "1 of 1 videos not found"),
    (None, "manifest not found"),
])
def test_manifest_errors_are_one_line_before_training(media: Path, tmp_path: Path, capsys, content, words) -> None:
    manifest = media / f"bad_{abs(hash(str(content))) % 10**8}.csv"
    if content is None:
        manifest = media / "nowhere" / "train.csv"
    else:
        manifest.write_text(content)
    from lc4.cli import main as lc4_main

    cfg = tiny_config(tmp_path, data={"synthetic": None, "train_manifest": str(manifest)})
    assert lc4_main(["train", "fit", "--config", str(cfg)]) == 1  # `lc4 train` = train.py
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("lc4 train: error:") and words in lines[-1], err
    assert "Traceback" not in err
    assert not (tmp_path / "lightning_logs").exists()  # nothing was built or trained


def test_bad_options_exit_non_zero_without_traceback(tmp_path: Path, capsys) -> None:
    assert train(tiny_config(tmp_path), "--model.stage", "5") == 1
    err = capsys.readouterr().err
    assert "stage must be 0, 1 or 2" in err and "Traceback" not in err
    assert train(tiny_config(tmp_path), "--trainer.no_such_option", "1") == 2  # argparse usage error
    assert train(tiny_config(tmp_path, model={"init_from": str(tmp_path / "missing")})) == 1
    assert "init_from" in capsys.readouterr().err


# --------------------------------------------------------------------------- multi-process and learning


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 0])  # stage 0 also checks DDP's every-weight-gets-a-gradient rule
def test_ddp_two_processes_get_disjoint_shards(tmp_path: Path, stage: int) -> None:
    cfg = tiny_config(tmp_path, stage=stage, steps=2, videos=16, batch=4, frames=2 if stage == 0 else 4,
                      model={"log_sample_indices": True})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "train.py", "fit", "--config", str(cfg), "--trainer.devices", "2",
                           "--trainer.strategy", "ddp"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    files = sorted(tmp_path.glob("lightning_logs/version_*/indices_rank*.txt"))
    assert [f.name for f in files] == ["indices_rank0.txt", "indices_rank1.txt"]  # one log dir for both ranks
    seen = [[int(x) for line in f.read_text().splitlines() for x in line.split()[1:]] for f in files]
    assert [len(s) for s in seen] == [8, 8]  # 2 steps × batch 4 on each rank
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(16))
    assert (tmp_path / "export" / "model_index.json").is_file() and (tmp_path / "ckpt" / "last.ckpt").is_file()


def _colour_psnr(model: LC4Model, dataset, count: int) -> tuple[float, float]:
    """Mean RGB PSNR and ab-channel MSE (CIELAB) of the pipeline's colorization of training clips."""
    from lc4.color import rgb_to_lab, to_grey
    from lc4.metrics import psnr
    from lc4.pipeline import LC4Pipeline

    pipe = LC4Pipeline(model)
    scores = []
    for i in range(count):
        video = dataset.video(i)
        out = pipe(to_grey(video.rgb), video.caption, num_inference_steps=10, guidance_scale=1.0, seed=0,
                   resolution=video.rgb.shape[1], progress=False).frames
        ab = lambda x: rgb_to_lab(x.astype(np.float32) / 255)[..., 1:]  # noqa: E731
        scores.append((psnr(out, video.rgb), float(((ab(out) - ab(video.rgb)) ** 2).mean())))
    return tuple(np.mean(scores, axis=0))


@pytest.mark.slow
def test_tiny_model_learns_to_colorize(tmp_path: Path) -> None:
    """Stage 0 (decoder skips) then stage 1 on 4 clips: the loss falls and colours get closer."""
    from lc4.data.synthetic import SyntheticVideoDataset

    videos, steps0, steps1 = 4, 150, 150
    data = {"synthetic": {"num_videos": videos, "num_shapes": [1, 2]}}  # EMA 0.9: runs this short
    assert train(tiny_config(tmp_path / "s0", stage=0, steps=steps0, videos=videos, frames=2, batch=4,
                             every=steps0, data=data, model={"ema_decay": 0.9})) == 0
    assert train(tiny_config(tmp_path / "s1", stage=1, steps=steps1, videos=videos, frames=8, batch=4, every=steps1,
                             data=data, model={"init_from": str(tmp_path / "s0" / "export"), "ema_decay": 0.9})) == 0
    for run, n in (("s0", steps0), ("s1", steps1)):
        curve = [v for _, v in read_metric(tmp_path / run, "train/loss")]
        assert len(curve) == n
        first, last = float(np.mean(curve[:10])), float(np.mean(curve[-10:]))
        print(f"{run}: mean loss of the first 10 steps {first:.4f}, of the last 10 {last:.4f}")
        assert last < 0.5 * first
    dataset = SyntheticVideoDataset(videos, num_frames=8, size=32, num_shapes=(1, 2))  # the training clips
    trained = _colour_psnr(LC4Model.from_pretrained(tmp_path / "s1" / "export"), dataset, videos)
    untrained = _colour_psnr(LC4Model.from_pretrained(tmp_path / "s0" / "export"), dataset, videos)  # UNet at init
    print(f"RGB PSNR / ab MSE: trained {trained[0]:.2f} dB / {trained[1]:.1f}, "
          f"untrained UNet {untrained[0]:.2f} dB / {untrained[1]:.1f}")
    assert trained[0] > untrained[0] + 3.0 and trained[1] < 0.5 * untrained[1]


def test_gradient_checkpointing_in_stage2_recomputes_the_frozen_unet_with_equal_gradients() -> None:
    from lc4.data.synthetic import SyntheticVideoDataset
    from lc4.training.losses import denoising_loss

    ds = SyntheticVideoDataset(2, num_frames=4, size=32, num_shapes=(1, 1))
    pixels = torch.stack([ds[i]["pixel_values"] for i in range(2)])
    captions = [ds[i]["caption"] for i in range(2)]
    grads, calls = [], []
    for checkpointing in (False, True):
        module = tiny_module(stage=2, gradient_checkpointing=checkpointing)
        module.freeze_frozen_parts()
        assert module.model.unet.unet.is_gradient_checkpointing == checkpointing
        first_op = module.model.unet.transformer_blocks()[0].norm1  # recomputation (which may stop early)
        count = [0]  # always starts with it
        first_op.register_forward_hook(lambda *a: count.__setitem__(0, count[0] + 1))
        loss = denoising_loss(module.model, pixels, captions, module.noise_scheduler, caption_dropout=0.0,
                              generator=torch.Generator().manual_seed(0))
        loss.backward()
        grads.append({n: p.grad for n, p in module.trainable_named_parameters()})
        calls.append(count[0])
    assert calls == [1, 2]  # the block ran again during backward
    assert_same_tensors(grads[1], grads[0], atol=1e-6)


def test_shape_loss_weight_needs_masks_and_trains_on_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape_loss_weight must be >= 1"):
        tiny_module(stage=1, shape_loss_weight=0.5)
    module = tiny_module(stage=1, shape_loss_weight=4.0, ema_decay=None)
    with pytest.raises(ValueError, match="with_masks: true"):
        quick_trainer(tmp_path, 1).fit(module, synthetic_dm(videos=2))
    assert_trains_on_synthetic(module, tmp_path, with_masks=True)
    assert_trains_on_synthetic(tiny_module(stage=0, shape_loss_weight=4.0, ema_decay=None), tmp_path / "stage0",
                               with_masks=True)


def test_stage0_shape_weight_is_a_weighted_l1_over_the_shapes() -> None:
    from lc4.training.losses import chroma, reconstruction_loss

    module = tiny_module(stage=0, train_parts=["lum_encoder"])
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:16, 8:20] = 1
    with torch.no_grad():
        plain = reconstruction_loss(module.model, pixels, chroma_weight=1.0)
        unweighted = reconstruction_loss(module.model, pixels, chroma_weight=1.0, shape_mask=mask, shape_weight=1.0)
        weighted = reconstruction_loss(module.model, pixels, chroma_weight=1.0, shape_mask=mask, shape_weight=5.0)
        lum = module.model.encode_luminance(grey_input(pixels))
        latents = module.model.vae.encode(pixels).latent_dist.mode() * module.model.vae.config.scaling_factor
        recon = module.model.decode(latents, lum).float()
    assert torch.equal(plain, unweighted)
    w = 1 + 4 * mask  # (b, 1, h, w): five times the weight inside the shape, normalised by Σ w
    expected = ((w * (recon - pixels).abs()).sum() / (3 * w.sum())
                + (w * (chroma(recon) - chroma(pixels)).abs()).sum() / (2 * w.sum()))
    torch.testing.assert_close(weighted, expected)


def assert_trains_on_synthetic(module: LC4Module, tmp: Path, **synthetic: Any) -> None:
    """Two steps on a small synthetic set with these dataset options change the trained weights."""
    dm = VideoDataModule(synthetic={"num_videos": 4, "num_shapes": [1, 2], **synthetic}, num_frames=2,
                         resolution=32, batch_size=2, num_workers=0)
    before = {n: p.detach().clone() for n, p in module.trainable_named_parameters()}
    quick_trainer(tmp, 2).fit(module, dm)
    assert any(not torch.equal(before[n], p) for n, p in module.trainable_named_parameters())


def test_twin_batches_train_as_pairs(tmp_path: Path) -> None:
    from lc4.training.module import with_twins

    batch = {"pixel_values": torch.zeros(2, 2, 3, 8, 8), "caption": ["a", "b"], "shape_mask": torch.ones(2, 2, 8, 8),
             "twin_pixel_values": torch.ones(2, 2, 3, 8, 8), "twin_caption": ["c", "d"], "index": torch.arange(2)}
    out = with_twins(batch)
    assert out["pixel_values"].shape[0] == 4 and out["caption"] == ["a", "b", "c", "d"]
    assert torch.equal(out["pixel_values"][2:], batch["twin_pixel_values"]) and out["shape_mask"].shape[0] == 4
    plain = {k: v for k, v in batch.items() if not k.startswith("twin")}
    assert with_twins(plain) is plain
    assert_trains_on_synthetic(tiny_module(stage=1, ema_decay=None), tmp_path, twins=True)


def test_grounding_loss_weight_is_checked_and_needs_masks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="grounding_loss_weight must be >= 0"):
        tiny_module(stage=1, grounding_loss_weight=-1.0)
    with pytest.raises(ValueError, match="stages 1 and 2"):
        tiny_module(stage=0, grounding_loss_weight=0.1)
    module = tiny_module(stage=1, grounding_loss_weight=0.1, ema_decay=None)
    with pytest.raises(ValueError, match="grounding_loss_weight needs the batches' shape masks"):
        quick_trainer(tmp_path, 1).fit(module, synthetic_dm(videos=2))
    assert_trains_on_synthetic(module, tmp_path, with_masks=True, twins=True)
