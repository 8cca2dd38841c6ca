"""`LC4Module`: one LightningModule for the three training stages of L-C4 (SPEC §2).

* stage 0 — E^lum + decoder skip convs, reconstruction (L1, + LPIPS when its weights exist);
* stage 1 — UNet + TDA + lum injection, ε-MSE with CLIP text (10% empty-prompt dropout);
* stage 2 — CMPF with the UNet frozen, ε-MSE.

Which parts train is the config's `train_parts` (defaults per stage); everything else is frozen:
eval mode, `requires_grad=False`, cast to the working dtype of mixed precision. Randomness of a
step (noise, timesteps, caption dropout) is drawn from a generator seeded by (seed, step, rank),
so a resumed run repeats an uninterrupted one exactly. An EMA of the trained weights is kept in
fp32, saved in the checkpoint and used by `export`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from ..models.config import LC4Config
from ..models.lc4 import LC4Model
from .losses import denoising_loss, reconstruction_loss

log = logging.getLogger("lc4")

PARTS = ("vae", "lum_encoder", "unet", "text_encoder", "cmpf")
STAGE_PARTS = {0: ["lum_encoder"], 1: ["unet"], 2: ["cmpf"]}


def build_model(model: str = "tiny", sd15: str | None = None, model_config: dict | None = None,
                trust_checkpoint: bool = False) -> LC4Model:
    """`model`: 'tiny' | 'sd15' | a model YAML | an L-C4 folder; `sd15`: SD1.5 weights to start from."""
    path = Path(model)
    if path.is_dir():
        return LC4Model.from_pretrained(path)
    if model in ("tiny", "sd15"):
        config = LC4Config.from_dict({"base": model, **(model_config or {})})
    elif path.suffix in (".yaml", ".yml", ".json"):
        config = LC4Config.from_file(path)
        if model_config:
            config = LC4Config.from_dict({**config.to_dict(), **model_config})
    else:
        raise ValueError(f"model must be 'tiny', 'sd15', a model config file or an L-C4 folder; got {model!r}")
    if sd15 is None:
        return LC4Model.from_config(config, seed=0)
    src = Path(sd15)
    if src.is_file():
        return LC4Model.from_single_file(src, config, trust_pickle=trust_checkpoint)
    return LC4Model.from_sd15(sd15, config)


def load_weights_from(model: LC4Model, source: str) -> list[str]:
    """Copy weights from a previous stage (L-C4 folder or Lightning checkpoint); returns loaded parts."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"init_from: {source} does not exist")
    if path.is_dir():
        other = LC4Model.from_pretrained(path)
        loaded = []
        for part in PARTS:
            mine, theirs = getattr(model, part), getattr(other, part)
            if mine is not None and theirs is not None:
                mine.load_state_dict(theirs.state_dict())
                loaded.append(part)
        return loaded
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    ema = ckpt.get("lc4_ema") or {}
    state.update(ema)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"init_from {source}: {len(unexpected)} unexpected weights, e.g. {unexpected[0]}")
    return sorted({k.split(".")[0] for k in state})


class LC4Module(pl.LightningModule):
    """Trains one stage of L-C4; `python train.py fit --config configs/train/stage1_sd15.yaml`."""

    def __init__(
        self,
        stage: int = 1,
        model: str = "tiny",
        sd15: str | None = None,
        model_config: dict | None = None,
        init_from: str | None = None,
        train_parts: list[str] | None = None,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.99, 0.999),
        weight_decay: float = 1e-4,
        caption_dropout: float = 0.1,
        gradient_checkpointing: bool = False,
        ema_decay: float | None = 0.999,
        lpips_weights: str | None = None,
        seed: int = 0,
        log_sample_indices: bool = False,
        trust_checkpoint: bool = False,
    ):
        super().__init__()
        if stage not in STAGE_PARTS:
            raise ValueError(f"stage must be 0, 1 or 2, got {stage}")
        self.save_hyperparameters()
        self.model = build_model(model, sd15, model_config, trust_checkpoint)
        if init_from:
            parts = load_weights_from(self.model, init_from)
            print(f"initialised {', '.join(parts)} from {init_from}", flush=True)
        self.train_parts = list(train_parts or STAGE_PARTS[stage])
        unknown = set(self.train_parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown train_parts {sorted(unknown)}; parts are {', '.join(PARTS)}")
        if stage == 2 and self.model.cmpf is None:
            raise ValueError("stage 2 trains CMPF, but the model config has cmpf.enabled: false")
        for part in PARTS:
            module = getattr(self.model, part)
            if module is not None:
                module.requires_grad_(part in self.train_parts)
        if gradient_checkpointing and "unet" in self.train_parts:
            self.model.unet.enable_gradient_checkpointing()
        self.noise_scheduler = self.model.noise_scheduler("DDPMScheduler")
        self.lpips = None
        self._ema: dict[str, torch.Tensor] = {}
        self._last_time: float | None = None

    # ------------------------------------------------------------- bookkeeping
    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def parameter_report(self) -> str:
        """Trainable / frozen parameter counts per part (printed at the start of fit)."""
        lines = [f"stage {self.hparams.stage}: training {', '.join(self.train_parts)}"]
        for part in PARTS:
            module = getattr(self.model, part)
            if module is None:
                continue
            train = sum(p.numel() for p in module.parameters() if p.requires_grad)
            frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
            lines.append(f"  {part:<13} trainable {train:>13,}   frozen {frozen:>13,}")
        return "\n".join(lines)

    def _frozen_dtype(self) -> torch.dtype:
        precision = str(getattr(self.trainer, "precision", "32"))
        if "bf16" in precision:
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float32

    def setup(self, stage: str) -> None:
        dtype = self._frozen_dtype()
        for part in PARTS:
            module = getattr(self.model, part)
            if module is not None and part not in self.train_parts:
                module.to(dtype=dtype)
        if self.hparams.stage == 0 and self.hparams.lpips_weights:
            from ..metrics.lpips import load_lpips

            self.lpips = load_lpips(self.hparams.lpips_weights)
            self.lpips.requires_grad_(False)

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            print(self.parameter_report(), flush=True)

    def on_train_epoch_start(self) -> None:
        for part in PARTS:  # Lightning puts everything in train mode; frozen parts stay in eval
            module = getattr(self.model, part)
            if module is not None and part not in self.train_parts:
                module.eval()

    # ---------------------------------------------------------------- training
    def _step_generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % (2**63))
        return g

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if self.hparams.stage == 0:
            loss = reconstruction_loss(self.model, pixels, self.lpips)
        else:
            loss = denoising_loss(self.model, pixels, batch["caption"], self.noise_scheduler,
                                  caption_dropout=self.hparams.caption_dropout, generator=self._step_generator(),
                                  use_cmpf=self.hparams.stage == 2)  # stage 1: plain CLIP embeddings
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}")
        now = time.perf_counter()
        if self._last_time is not None:
            self.log("train/clips_per_s", pixels.shape[0] * self.trainer.world_size / (now - self._last_time),
                     prog_bar=True, sync_dist=False, batch_size=pixels.shape[0])
        self._last_time = now
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=pixels.shape[0])
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=False,
                 batch_size=pixels.shape[0])
        if self.hparams.log_sample_indices and "index" in batch:
            log_dir = Path(self.trainer.log_dir or ".")
            with open(log_dir / f"indices_rank{self.global_rank}.txt", "a") as fh:
                fh.write(" ".join(str(int(i)) for i in batch["index"]) + "\n")
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.hparams.seed + batch_idx)
        if self.hparams.stage == 0:
            loss = reconstruction_loss(self.model, batch["pixel_values"], self.lpips)
        else:
            loss = denoising_loss(self.model, batch["pixel_values"], batch["caption"], self.noise_scheduler,
                                  caption_dropout=0.0, generator=g, use_cmpf=self.hparams.stage == 2)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["pixel_values"].shape[0])
        return loss

    def configure_optimizers(self):
        params = [p for _, p in self.trainable_named_parameters()]
        return torch.optim.AdamW(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                 weight_decay=self.hparams.weight_decay)

    # --------------------------------------------------------------------- EMA
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        decay = self.hparams.ema_decay
        if not decay:
            return
        with torch.no_grad():
            for name, p in self.trainable_named_parameters():
                avg = self._ema.get(name)
                if avg is None:
                    self._ema[name] = p.detach().float().clone()
                else:
                    avg.lerp_(p.detach().float(), 1 - decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._ema:
            checkpoint["lc4_ema"] = {k: v.cpu() for k, v in self._ema.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._ema = {k: v.to(self.device) for k, v in checkpoint.get("lc4_ema", {}).items()}

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights (model-relative names), empty when EMA is off or nothing was trained."""
        return dict(self._ema)

    def export(self, path: str | Path, use_ema: bool = True) -> Path:
        """Write the trained model in the pipeline's `save_pretrained` format (EMA weights by default)."""
        model = self.model
        if use_ema and self._ema:
            backup = {n: p.detach().clone() for n, p in model.named_parameters() if n in self._ema}
            with torch.no_grad():
                params = dict(model.named_parameters())
                for n, v in self._ema.items():
                    params[n].copy_(v.to(params[n].dtype))
            try:
                return model.save_pretrained(path)
            finally:
                with torch.no_grad():
                    for n, v in backup.items():
                        params[n].copy_(v)
        return model.save_pretrained(path)


def train_parts_of(stage: int) -> Sequence[str]:
    """Default trainable parts of a stage."""
    return STAGE_PARTS[stage]
