"""Sharded training (issue 25, item 6): FSDP's wrap policy, clipping, dtypes, export; DeepSpeed refused.

The fast tests check the pieces in-process; the slow one trains the tiny model with two real gloo
processes on CPU under `--trainer.strategy lc4_fsdp` (FSDP's collectives are the same on GPUs; the
NCCL side and the memory savings need a CUDA machine and were not measured here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy, StrategyRegistry

from lc4.training.strategies import WRAPPED_BLOCKS, LC4FSDPStrategy, configure_fsdp, lc4_wrap_policy
from tests.test_training import ROOT, _folder_tensors, assert_same_tensors, load_ckpt, tiny_config, tiny_module


def _trainer(strategy, precision: str = "32-true") -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, strategy=strategy, precision=precision, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


# --------------------------------------------------------------------------- configuration


def test_plain_fsdp_gets_lc4_wrap_policy_and_needs_use_orig_params() -> None:
    strategy = FSDPStrategy()  # `--trainer.strategy fsdp`: no wrap policy of its own
    assert "auto_wrap_policy" not in strategy.kwargs
    configure_fsdp(strategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    module = tiny_module(stage=1).model
    wrapped = {type(m).__name__ for m in module.modules() if policy._lambda_fn(m)}
    assert wrapped == {"BasicTransformerBlock", "ResnetBlock2D", "CLIPEncoderLayer"} <= WRAPPED_BLOCKS
    with pytest.raises(ValueError, match="use_orig_params"):
        configure_fsdp(FSDPStrategy(use_orig_params=False))
    mine = LC4FSDPStrategy()
    assert mine.kwargs["use_orig_params"] and mine.kwargs["auto_wrap_policy"] is not None
    assert StrategyRegistry["lc4_fsdp"]["strategy"] is LC4FSDPStrategy
    explicit = lc4_wrap_policy()
    assert LC4FSDPStrategy(auto_wrap_policy=explicit).kwargs["auto_wrap_policy"] is explicit


def test_setup_under_fsdp_keeps_frozen_parts_fp32_and_adds_the_policy(tmp_path: Path) -> None:
    """FSDP flattens a unit's weights into one tensor of one dtype: frozen parts must not be cast to bf16."""

    class PlainFSDP(FSDPStrategy):  # Lightning's FSDPStrategy itself is refused on CPU; this one is not
        pass

    module = tiny_module(stage=1, ema_decay=None)
    module.trainer = _trainer(PlainFSDP(), precision="bf16-mixed")
    assert "auto_wrap_policy" not in module.trainer.strategy.kwargs
    module.setup("fit")
    assert {p.dtype for p in module.model.parameters()} == {torch.float32}
    assert "auto_wrap_policy" in module.trainer.strategy.kwargs  # filled in before Lightning wraps the model
    ddp = tiny_module(stage=1)  # without FSDP the frozen parts still go to the working dtype
    ddp.trainer = _trainer(DDPStrategy(), precision="bf16-mixed")
    ddp.setup("fit")
    assert ddp.model.vae.dtype == torch.bfloat16 and ddp.model.unet.dtype == torch.float32


def test_ema_under_fsdp_and_any_deepspeed_are_refused_before_wrapping() -> None:
    module = tiny_module(stage=1, ema_decay=0.9)
    module.trainer = _trainer(LC4FSDPStrategy())
    with pytest.raises(ValueError, match="ema_decay: null"):
        module.setup("fit")

    class DeepSpeedStrategy(DDPStrategy):  # stands in for Lightning's (deepspeed is not installed here)
        pass

    module = tiny_module(stage=1, ema_decay=None)
    module.trainer = _trainer(DeepSpeedStrategy())
    with pytest.raises(ValueError, match="DeepSpeedStrategy is not supported"):
        module.setup("fit")


def test_norm_clipping_under_fsdp_goes_through_the_root_module() -> None:
    """Lightning's FSDP precision plugin refuses norm clipping; the root FSDP module's clip_grad_norm_
    is the correct norm over sharded gradients."""
    module = tiny_module(stage=1, ema_decay=None)
    module.trainer = _trainer(LC4FSDPStrategy())
    root = mock.Mock()
    module.trainer.strategy.model = root
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
    root.clip_grad_norm_.assert_called_once_with(0.5)
    module.configure_gradient_clipping(optimizer, gradient_clip_val=None, gradient_clip_algorithm="norm")
    assert root.clip_grad_norm_.call_count == 1  # nothing to clip


# --------------------------------------------------------------------------- two real processes


class GradNormProbe(pl.Callback):
    """Writes, per rank, the global gradient norm before and after Lightning's clipping (all ranks
    all-reduce their shards' squared norms, so both ranks write the same numbers)."""

    def __init__(self, out: str) -> None:
        self.out = out

    @staticmethod
    def _norm(module) -> float:
        sq = sum(float(p.grad.float().pow(2).sum()) for _, p in module.trainable_named_parameters()
                 if p.grad is not None)
        total = torch.tensor([sq], dtype=torch.float64)
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        return float(total.sqrt())

    def _write(self, trainer, line: str) -> None:
        with open(Path(self.out) / f"norms_rank{trainer.global_rank}.txt", "a") as fh:
            fh.write(line + "\n")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # before clipping
        self._write(trainer, f"before {self._norm(pl_module)}")

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # after the (clipped) step
        self._write(trainer, f"after {self._norm(pl_module)}")


def _fsdp_run(cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "train.py", "fit", "--config", str(cfg), "--trainer.devices", "2",
                           "--trainer.strategy", "lc4_fsdp", *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=500)


@pytest.mark.slow
def test_fsdp_two_processes_clip_checkpoint_resume_and_export(tmp_path: Path) -> None:
    """Two gloo processes, tiny stage 1 under FSDP: norm clipping works and clips, SampleLogger does not
    deadlock (it is skipped), checkpoints hold full weights that resume exactly and that `lc4 export`
    turns into the same folder as the end-of-run export (gathered on every rank, written by rank 0)."""
    from lc4.cli import main as lc4_main

    clip = 1e-3
    probe = {"class_path": "tests.test_training_fsdp.GradNormProbe", "init_args": {"out": str(tmp_path)}}
    cfg = tiny_config(tmp_path / "a", steps=2, videos=16, batch=4, sample_logger=True, model={"ema_decay": None},
                      trainer={"gradient_clip_val": clip})
    import yaml

    data = yaml.safe_load(cfg.read_text())
    data["trainer"]["callbacks"].append(probe)
    cfg.write_text(yaml.safe_dump(data))
    proc = _fsdp_run(cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "distributed_backend=gloo" in out and "no sample pictures under LC4FSDPStrategy" in out
    assert not list((tmp_path / "a").glob("lightning_logs/version_*/samples/*.png"))
    norms = [(tmp_path / f"norms_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert norms[0] == norms[1]  # one global norm, seen alike by both ranks
    before = [float(v) for k, v in zip(norms[0][::2], norms[0][1::2]) if k == "before"]
    after = [float(v) for k, v in zip(norms[0][::2], norms[0][1::2]) if k == "after"]
    assert len(before) == len(after) == 2 and all(b > clip for b in before)
    assert all(a <= clip * 1.001 for a in after)

    last = load_ckpt(tmp_path / "a" / "ckpt" / "last.ckpt")
    assert last["global_step"] == 2 and "lc4_ema" not in last
    assert any(k.startswith("model.unet.") for k in last["state_dict"])
    assert not any("_fsdp_wrapped_module" in k or "_flat_param" in k for k in last["state_dict"])
    exported = tmp_path / "exported"
    assert lc4_main(["export", str(tmp_path / "a" / "ckpt" / "last.ckpt"), str(exported)]) == 0
    assert_same_tensors(_folder_tensors(exported), _folder_tensors(tmp_path / "a" / "export"))

    # resume from step 1 under FSDP: the same weights at step 2
    cfg_b = tiny_config(tmp_path / "b", steps=2, videos=16, batch=4, model={"ema_decay": None},
                        trainer={"gradient_clip_val": clip})
    proc = _fsdp_run(cfg_b, "--ckpt_path", str(tmp_path / "a" / "ckpt" / "step=1.ckpt"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert_same_tensors(load_ckpt(tmp_path / "b" / "ckpt" / "last.ckpt")["state_dict"], last["state_dict"], atol=1e-6)
