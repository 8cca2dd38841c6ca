"""`LC4Module`: one LightningModule for the three training stages of L-C4 (SPEC §2).

* stage 0 — E^lum + decoder skip convs, reconstruction (L1, + LPIPS when its weights exist);
* stage 1 — UNet + TDA + lum injection, ε-MSE with CLIP text (10% empty-prompt dropout);
* stage 2 — CMPF with the UNet frozen, ε-MSE.

`use_cmpf: true` conditions stage 1 on CMPF's output too, so that `train_parts: [unet, cmpf]`
trains both together (an option; the demo keeps the paper's order, docs/decisions.md).
`lr_schedule: cosine` decays the learning rate to `min_lr_ratio`·lr over `max_steps` after
`warmup_steps` of linear warm-up (only over the last `decay_steps` when set, the rate held before
them); `chroma_weight` adds an L1 on Lab (a, b) to stage 0's loss.
`context_frame_fraction` gives that share of the training clips one cleaner frame (a lower timestep
than the clip's, `losses.context_timesteps`; not in L-C4), so the temporal layers learn to carry what
one frame shows to the others (docs/decisions.md). `noise_correlation` trains on the mixed noise
prior that the pipeline's option of that name samples from (`sampling.mixed_noise`; not in L-C4).
`fresh_temporal` starts the temporal layers from zero even when `init_from` has some (another
temporal module on the same image model, e.g. the "w/o TDA" fixed-location attention).
`offset_lr_ratio` scales the learning rate of the deformable samplers' offset heads (TDA's and CMPF's
W_o and δ_offset), as Deformable DETR trains its sampling offsets at 0.1× (not in L-C4).
`independent_frames` trains every frame of a clip as its own one-frame clip (`frames_as_clips`): the
frames-independent control for a multi-frame run, on the same data.
`frozen_modules` keeps named submodules of trained parts frozen (e.g. stage 1 training only
E^lum's latent head: `lum_encoder.encoder.down_blocks`, `.conv_in`, `.mid_block` frozen).
`posterior_logvar_init` starts a VAE trained here with a near-deterministic posterior
(`init_posterior_logvar`) instead of diffusers' std of about 1, which SD's KL weight shrinks only
slowly; on the demo's stage 0 it did not lift the round trip (docs/decisions.md), so it is off.

Which parts train is the config's `train_parts` (defaults per stage); everything else is frozen:
eval mode, `requires_grad=False`, cast to the working dtype of mixed precision (an fp32 copy is
kept on the host, so checkpoints and exports keep the frozen weights exactly). Randomness of a
step (noise, timesteps, caption dropout) is drawn from a generator seeded by (seed, step,
micro-batch, rank), and the data order by (seed, epoch, index), so a resumed run repeats an
uninterrupted one exactly. An EMA of the trained weights is kept in fp32, updated once per
optimizer step, saved in the checkpoint and used by `export`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from einops import rearrange
from torch import nn

from ..models.config import LC4Config
from ..models.lc4 import LC4Model
from ..sampling import check_noise_correlation
from .losses import denoising_loss, latent_scale, reconstruction_loss
from .strategies import configure_fsdp, gather_full_state_dict, is_fsdp, unsupported_strategy

log = logging.getLogger("lc4")

LR_SCHEDULES = ("constant", "cosine")
PARTS = ("vae", "lum_encoder", "unet", "text_encoder", "cmpf")
STAGE_PARTS = {0: ["lum_encoder"], 1: ["unet"], 2: ["cmpf"]}
# What each stage's loss never reaches ("" = the whole part): outputs it does not use, or that are
# computed without gradients (VAE encoding, CLIP). Such weights stay frozen even inside a trained
# part, because DDP needs a gradient for every trained parameter; a trained part that is reached
# nowhere is an error. tests/test_training.py checks this table against autograd.
UNREACHED: dict[int, dict[str, tuple[str, ...]]] = {
    0: {"lum_encoder": ("encoder.conv_norm_out", "encoder.conv_out"), "unet": ("",), "text_encoder": ("",),
        "cmpf": ("",)},
    1: {"vae": ("",), "lum_encoder": ("skip_convs",), "text_encoder": ("",), "cmpf": ("",)},
    2: {"vae": ("",), "lum_encoder": ("skip_convs",), "text_encoder": ("",)},
}


def is_offset_parameter(name: str) -> bool:
    """A parameter of a deformable sampler's offset head (W_o or δ_offset), in TDA or CMPF."""
    return ".sampler.project." in name or ".sampler.offset_net." in name or ".compress.project." in name \
        or ".compress.offset_net." in name


def build_model(model: str = "tiny", sd15: str | None = None, model_config: dict | None = None,
                trust_checkpoint: bool = False, seed: int = 0) -> LC4Model:
    """`model`: 'tiny' | 'sd15' | a model YAML | an L-C4 folder; `sd15`: SD1.5 weights to start from.

    A model built from a config starts from random weights drawn with `seed` (the run's
    `seed_everything`), so training seeds differ in their initialisation too, not only in the
    data order and noise.
    """
    path = Path(model)
    if path.is_dir():
        return LC4Model.from_pretrained(path)
    if model in ("tiny", "sd15"):
        config = LC4Config.from_dict({"base": model, **(model_config or {})})
    elif path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"model config {model} does not exist (paths are relative to the working directory)")
        config = LC4Config.from_file(path)
        if model_config:
            config = LC4Config.from_dict({**config.to_dict(), **model_config})
    else:
        raise ValueError(f"model must be 'tiny', 'sd15', a model config file or an L-C4 folder; got {model!r}")
    if sd15 is None:
        return LC4Model.from_config(config, seed=seed)
    src = Path(sd15)
    if src.is_file():
        return LC4Model.from_single_file(src, config, trust_pickle=trust_checkpoint)
    return LC4Model.from_sd15(sd15, config)


def model_state_from_checkpoint(ckpt: Mapping[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Model-relative weights of a Lightning checkpoint written by `LC4Module`, EMA applied by default."""
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if use_ema:
        state.update(ckpt.get("lc4_ema") or {})
    return state


def load_part(part: str, module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load one part's weights exactly, except that a UNet trained without temporal layers (an image
    stage) may start a UNet that has them: its temporal layers keep their zero-output initialisation,
    so the video model starts as that image model (as L-C4 starts from SD1.5)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    new_temporal = part == "unet" and missing and all(k.startswith("temporal_layers.") for k in missing) \
        and not any(k.startswith("temporal_layers.") for k in state)
    if unexpected or (missing and not new_temporal):
        raise ValueError(f"init_from {source}: the {part} does not match this model's "
                         f"({len(missing)} missing, {len(unexpected)} unexpected weights, e.g. "
                         f"{(missing or unexpected)[0]})")
    if new_temporal:
        print(f"init_from {source}: its UNet has no temporal layers; this model's {len(module.temporal_layers)} "
              "start from their zero-output initialisation", flush=True)


def load_weights_from(model: LC4Model, source: str, parts: Sequence[str] | None = None,
                      fresh_temporal: bool = False) -> list[str]:
    """Copy weights from a previous stage (L-C4 folder or Lightning checkpoint); returns loaded parts.

    `parts` limits the copy to those parts (e.g. only the stage-0 `vae` and `lum_encoder`).
    `fresh_temporal`: leave out the source UNet's temporal layers, so that this model's start from
    their zero-output initialisation (another temporal module on the same image model).
    """
    def kept(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        drop = f"{prefix}temporal_layers."
        return {k: v for k, v in state.items() if not (fresh_temporal and k.startswith(drop))}

    unknown = set(parts or ()) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown init_parts {sorted(unknown)}; parts are {', '.join(PARTS)}")
    wanted = set(parts) if parts else set(PARTS)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"init_from: {source} does not exist")
    if path.is_dir():
        other = LC4Model.from_pretrained(path)
        loaded = []
        for part in PARTS:
            mine, theirs = getattr(model, part), getattr(other, part)
            if part in wanted and mine is not None and theirs is not None:
                load_part(part, mine, kept(theirs.state_dict()) if part == "unet" else theirs.state_dict(), source)
                loaded.append(part)
        if "vae" in loaded:  # a VAE trained from scratch carries its calibrated latent scale in its config
            model.set_latent_scale(other.vae.config.scaling_factor)
        return loaded
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"init_from {source}: not an lc4 training checkpoint (no state_dict)")
    state = {k: v for k, v in kept(model_state_from_checkpoint(ckpt), "unet.").items() if k.split(".")[0] in wanted}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"init_from {source}: {len(unexpected)} unexpected weights, e.g. {unexpected[0]}")
    return sorted({k.split(".")[0] for k in state})


def init_posterior_logvar(vae, logvar: float) -> None:
    """Make the encoder's log-variance head output the constant `logvar` (std = exp(logvar / 2)).

    The head is the second half of the channels of the VAE's last encoder conv (`quant_conv`, or
    `encoder.conv_out` without one; diffusers' `DiagonalGaussian` layout); its weights are zeroed
    and its bias set, so training starts from that posterior and moves it only as far as the KL
    term asks.
    """
    conv = vae.quant_conv if getattr(vae, "quant_conv", None) is not None else vae.encoder.conv_out
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[half:].zero_()
        conv.bias[half:].fill_(float(logvar))


@contextlib.contextmanager
def weights_swapped_in(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Temporarily load `weights` (a partial, model-relative state dict) into `model`; restore on exit."""
    if not weights:
        yield model
        return
    params = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise ValueError(f"{len(unknown)} weights do not belong to the model, e.g. {unknown[0]}")
    backup = {n: params[n].detach().clone() for n in weights}
    with torch.no_grad():
        for n, v in weights.items():
            params[n].copy_(v.to(params[n].device, params[n].dtype))
    try:
        yield model
    finally:
        with torch.no_grad():
            for n, v in backup.items():
                params[n].copy_(v)


def with_twins(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch with colour twins (`synthetic: {twins: true}`) as one batch of 2b clips: the originals,
    then their twins (same grey clips, so the same shape masks); unchanged without twins."""
    if "twin_pixel_values" not in batch:
        return batch
    out = dict(batch, pixel_values=torch.cat([batch["pixel_values"], batch["twin_pixel_values"]]),
               caption=list(batch["caption"]) + list(batch["twin_caption"]))
    for key in ("shape_mask", "instance_masks"):
        if key in batch:
            out[key] = torch.cat([batch[key], batch[key]])
    if "twin_instance_words" in batch:
        out["instance_words"] = list(batch["instance_words"]) + list(batch["twin_instance_words"])
    return out


def frames_as_clips(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch's b clips of f frames as b·f one-frame clips (captions and words repeated per frame):
    the same data with the frames trained independently, the control for what the temporal layers
    learn from multi-frame clips (`independent_frames`)."""
    f = batch["pixel_values"].shape[1]
    out = dict(batch, pixel_values=rearrange(batch["pixel_values"], "b f ... -> (b f) 1 ..."))
    for key in ("shape_mask", "instance_masks"):
        if key in batch:
            out[key] = rearrange(batch[key], "b f ... -> (b f) 1 ...")
    for key in ("caption", "instance_words"):
        if key in batch:
            out[key] = [item for item in batch[key] for _ in range(f)]
    return out


def step_seed(seed: int, step: int, micro_batch: int, rank: int) -> int:
    """A 63-bit seed for one (micro-)batch of one process; stable across runs and Python versions."""
    state = np.random.SeedSequence([int(seed), int(step), int(micro_batch), int(rank)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class LC4Module(pl.LightningModule):
    """Trains one stage of L-C4; `python train.py fit --config configs/train/stage1_sd15.yaml`."""

    def __init__(
        self,
        stage: int = 1,
        model: str = "tiny",
        sd15: str | None = None,
        model_config: dict | None = None,
        init_from: str | None = None,
        init_parts: list[str] | None = None,
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
        calibrate_text_encoder: int = 0,
        high_noise_fraction: float = 0.0,
        use_cmpf: bool | None = None,
        lr_schedule: str = "constant",
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        decay_steps: int | None = None,
        chroma_weight: float = 0.0,
        frozen_modules: list[str] | None = None,
        posterior_logvar_init: float | None = None,
        shape_loss_weight: float = 1.0,
        grounding_loss_weight: float = 0.0,
        context_frame_fraction: float = 0.0,
        noise_correlation: float = 0.0,
        independent_frames: bool = False,
        fresh_temporal: bool = False,
        offset_lr_ratio: float = 1.0,
    ):
        super().__init__()
        if not offset_lr_ratio >= 0:
            raise ValueError(f"offset_lr_ratio must be >= 0, got {offset_lr_ratio}")
        if stage not in STAGE_PARTS:
            raise ValueError(f"stage must be 0, 1 or 2, got {stage}")
        if calibrate_text_encoder < 0:
            raise ValueError(f"calibrate_text_encoder must be >= 0 (a number of captions), got {calibrate_text_encoder}")
        if not 0.0 <= context_frame_fraction <= 1.0:
            raise ValueError(f"context_frame_fraction must be in [0, 1], got {context_frame_fraction}")
        check_noise_correlation(noise_correlation)
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1], got {caption_dropout}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or null, got {ema_decay}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"need warmup_steps >= 0 and min_lr_ratio in [0, 1], got {warmup_steps}, {min_lr_ratio}")
        if decay_steps is not None and (decay_steps < 1 or lr_schedule != "cosine"):
            raise ValueError(f"decay_steps (the cosine's length at the end of the run) must be >= 1 and needs "
                             f"lr_schedule: cosine, got {decay_steps} with {lr_schedule!r}")
        if shape_loss_weight < 1:
            raise ValueError(f"shape_loss_weight must be >= 1 (1 = the plain mean), got {shape_loss_weight}")
        if grounding_loss_weight < 0 or (grounding_loss_weight > 0 and stage == 0):
            raise ValueError(f"grounding_loss_weight must be >= 0 and is for stages 1 and 2, got "
                             f"{grounding_loss_weight} in stage {stage}")
        if chroma_weight < 0:
            raise ValueError(f"chroma_weight must be >= 0, got {chroma_weight}")
        if posterior_logvar_init is not None and "vae" not in (train_parts or STAGE_PARTS[stage]):
            raise ValueError("posterior_logvar_init re-initialises the VAE's posterior: add vae to train_parts")
        if use_cmpf and stage == 0:
            raise ValueError("use_cmpf is for stages 1 and 2 (stage 0 trains the VAE side only)")
        if use_cmpf is False and stage == 2:
            raise ValueError("stage 2 trains CMPF, so it conditions on it: leave use_cmpf unset")
        self.save_hyperparameters()
        self.use_cmpf = stage == 2 if use_cmpf is None else bool(use_cmpf)
        self.model = build_model(model, sd15, model_config, trust_checkpoint, seed)
        if init_from:
            parts = load_weights_from(self.model, init_from, init_parts, fresh_temporal=fresh_temporal)
            print(f"initialised {', '.join(parts)} from {init_from}", flush=True)
        self.train_parts = list(train_parts or STAGE_PARTS[stage])
        if posterior_logvar_init is not None:
            init_posterior_logvar(self.model.vae, posterior_logvar_init)
        unknown = set(self.train_parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown train_parts {sorted(unknown)}; parts are {', '.join(PARTS)}")
        if self.use_cmpf and self.model.cmpf is None:
            raise ValueError(f"stage {stage} {'trains' if stage == 2 else 'uses'} CMPF, but the model config has "
                             "cmpf.enabled: false")
        absent = [p for p in self.train_parts if getattr(self.model, p) is None]
        if absent:
            raise ValueError(f"train_parts {absent} are not in this model (cmpf.enabled: false?)")
        self.unreached: list[str] = []
        for part in PARTS:
            module = getattr(self.model, part)
            if module is not None:
                module.requires_grad_(part in self.train_parts)
        unreached = UNREACHED[2 if stage == 1 and self.use_cmpf else stage]  # stage 1 with CMPF reaches what 2 does
        for part in self.train_parts:
            for sub in unreached.get(part, ()):
                if not sub:
                    hint = " (use_cmpf: true conditions stage 1 on CMPF)" if part == "cmpf" else ""
                    raise ValueError(f"train_parts: {part} gets no gradient in stage {stage} (the stage's loss "
                                     f"does not use it or computes it without gradients){hint}")
                getattr(self.model, part).get_submodule(sub).requires_grad_(False)
                self.unreached.append(f"{part}.{sub}")
        self.frozen_modules = list(frozen_modules or ())
        for dotted in self.frozen_modules:
            part, _, sub = dotted.partition(".")
            if part not in self.train_parts or not sub:
                raise ValueError(f"frozen_modules: {dotted!r} is not part.submodule of a trained part "
                                 f"({', '.join(self.train_parts)})")
            try:
                getattr(self.model, part).get_submodule(sub).requires_grad_(False)
            except AttributeError:
                raise ValueError(f"frozen_modules: {part} has no submodule {sub!r}") from None
        idle = [p for p in self.train_parts if not any(w.requires_grad for w in getattr(self.model, p).parameters())]
        if idle:
            raise ValueError(f"frozen_modules leave nothing of {', '.join(idle)} to train")
        if gradient_checkpointing and stage > 0:  # the UNet is in the graph in stages 1 and 2
            self.model.unet.enable_gradient_checkpointing()
        self.noise_scheduler = self.model.noise_scheduler("DDPMScheduler")
        self._lpips: list[nn.Module] = []  # a list, so it is not a submodule (not in checkpoints)
        self._ema: dict[str, torch.Tensor] = {}
        self._frozen_fp32: dict[str, torch.Tensor] = {}  # host copies of frozen weights cast down
        self._log_dir: Path | None = None
        self._last_time: float | None = None

    # ------------------------------------------------------------- bookkeeping
    def frozen_parts(self) -> list[str]:
        """The parts present in the model that this stage does not train."""
        return [p for p in PARTS if getattr(self.model, p) is not None and p not in self.train_parts]

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def parameter_report(self) -> str:
        """Trainable / frozen parameter counts per part (printed at the start of fit)."""
        lines = [f"stage {self.hparams.stage}: training {', '.join(self.train_parts)}"]
        total = [0, 0]
        for part in PARTS:
            module = getattr(self.model, part)
            if module is None:
                continue
            train = sum(p.numel() for p in module.parameters() if p.requires_grad)
            frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
            total[0], total[1] = total[0] + train, total[1] + frozen
            lines.append(f"  {part:<13} trainable {train:>13,}   frozen {frozen:>13,}")
        lines.append(f"  {'total':<13} trainable {total[0]:>13,}   frozen {total[1]:>13,}")
        if self.unreached:
            lines.append(f"  kept frozen (this stage's loss does not reach them): {', '.join(self.unreached)}")
        if self.frozen_modules:
            lines.append(f"  kept frozen (frozen_modules): {', '.join(self.frozen_modules)}")
        return "\n".join(lines)

    @property
    def log_dir(self) -> Path:
        """The run's log folder, resolved once on every rank at the start of fit."""
        if self._log_dir is None:
            trainer = self._trainer
            return Path(getattr(trainer, "default_root_dir", None) or ".")
        return self._log_dir

    def _frozen_dtype(self) -> torch.dtype:
        precision = str(getattr(self.trainer, "precision", "32"))
        if "bf16" in precision:
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float32

    def setup(self, stage: str) -> None:
        strategy = getattr(self._trainer, "strategy", None)
        self._check_strategy(strategy)
        if stage == "fit" and self.hparams.calibrate_text_encoder:
            self.calibrate_text_encoder(self.hparams.calibrate_text_encoder)
        # counted here, before a sharding strategy wraps the model (FSDP's views are per-rank shards)
        self._report = self.parameter_report()
        dtype = self._frozen_dtype()
        # FSDP flattens each unit's weights into one tensor of a single dtype, so under FSDP the frozen
        # parts stay fp32 (sharded, and cast for the forward by FSDP's own mixed precision)
        if dtype != torch.float32 and not is_fsdp(strategy):
            for part in self.frozen_parts():
                module = getattr(self.model, part)
                for name, value in module.state_dict().items():
                    key = f"{part}.{name}"
                    if value.is_floating_point() and value.dtype == torch.float32 and key not in self._frozen_fp32:
                        self._frozen_fp32[key] = value.detach().to("cpu", copy=True)
                module.to(dtype=dtype)

    def calibrate_text_encoder(self, count: int) -> None:
        """Standardise the frozen random-weight text encoder on the first `count` training captions.

        Deterministic (same captions, same weights), so a resumed run recomputes exactly what its
        checkpoint holds. Only for text encoders that are random and frozen (the demo model).
        """
        from ..models.text import standardize_text_encoder

        if "text_encoder" in self.train_parts:
            raise ValueError("calibrate_text_encoder is for a frozen text encoder, but train_parts has text_encoder")
        if self.model.config.text_pretrained is not None:
            raise ValueError("calibrate_text_encoder rewrites the stored CLIP's last LayerNorm; this model references "
                             f"its text encoder ({self.model.config.text_pretrained}), which it does not store")
        dataset = self._train_dataset()
        if dataset is None:
            raise ValueError("calibrate_text_encoder needs the training data (a datamodule with a train dataset)")

        def caption(i: int) -> str:  # the synthetic set renders its caption without the frames
            return dataset.video(i).caption if hasattr(dataset, "video") else dataset[i]["caption"]

        captions = [caption(i) for i in range(min(count, len(dataset)))]
        _, std = standardize_text_encoder(self.model.text_encoder, self.model.tokenizer, captions)
        log.info("text encoder standardised on %d captions (channel std was %.3f..%.3f)", len(captions),
                 std.min().item(), std.max().item())

    def _check_strategy(self, strategy: Any) -> None:
        """Refuse what cannot run correctly, before the model is wrapped (and before minutes of work)."""
        if strategy is None:
            return
        reason = unsupported_strategy(strategy)
        if reason:
            raise ValueError(reason)
        if is_fsdp(strategy):
            if self.hparams.ema_decay:
                raise ValueError(f"the EMA needs whole parameters on every rank; with {type(strategy).__name__} "
                                 "set model.ema_decay: null (or use ddp)")
            configure_fsdp(strategy)

    def on_fit_start(self) -> None:
        self._check_strategy(self.trainer.strategy)  # also when setup was not called through the trainer
        trainer = self.trainer
        self._log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # a collective: every rank calls it
        self.align_ema()  # a resumed EMA was restored before the module moved to its device
        if trainer.is_global_zero:
            print(getattr(self, "_report", None) or self.parameter_report(), flush=True)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's clipping, except norm clipping under FSDP: the norm of sharded gradients is only
        right when the root FSDP module computes it over every rank (Lightning refuses it there)."""
        strategy = getattr(self._trainer, "strategy", None)
        if gradient_clip_val and is_fsdp(strategy) and gradient_clip_algorithm in (None, "norm"):
            strategy.model.clip_grad_norm_(float(gradient_clip_val))  # a collective: every rank is here
            return
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                            gradient_clip_algorithm=gradient_clip_algorithm)

    def on_train_epoch_start(self) -> None:
        self.freeze_frozen_parts()

    def freeze_frozen_parts(self) -> None:
        """Frozen parts back to eval mode (Lightning puts the whole module in train mode)."""
        for part in self.frozen_parts():
            getattr(self.model, part).eval()

    # ---------------------------------------------------------------- training
    def _step_generator(self, batch_idx: int = 0) -> torch.Generator:
        accumulate = max(1, int(getattr(self._trainer, "accumulate_grad_batches", 1) or 1))
        g = torch.Generator(device=self.device)
        g.manual_seed(step_seed(self.hparams.seed, self.global_step, batch_idx % accumulate, self.global_rank))
        return g

    def _lpips_module(self) -> nn.Module | None:
        if self.hparams.stage != 0 or not self.hparams.lpips_weights:
            return None
        if not self._lpips:
            from ..metrics.lpips import load_lpips

            self._lpips.append(load_lpips(self.hparams.lpips_weights).requires_grad_(False).eval())
        self._lpips[0].to(self.device)
        return self._lpips[0]

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).all())
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:  # every rank must agree, or the others hang
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        batch = with_twins(batch)
        if self.hparams.independent_frames:
            batch = frames_as_clips(batch)
        pixels = batch["pixel_values"]
        if self.hparams.stage == 0:
            loss = reconstruction_loss(self.model, pixels, self._lpips_module(),
                                       generator=self._step_generator(batch_idx),
                                       chroma_weight=self.hparams.chroma_weight, **self._shape_weighting(batch))
        else:
            loss = denoising_loss(self.model, pixels, batch["caption"], self.noise_scheduler,
                                  caption_dropout=self.hparams.caption_dropout,
                                  generator=self._step_generator(batch_idx),
                                  use_cmpf=self.use_cmpf,  # stage 1: plain CLIP embeddings by default
                                  high_noise_fraction=self.hparams.high_noise_fraction,
                                  paired="twin_caption" in batch,
                                  context_frame_fraction=self.hparams.context_frame_fraction,
                                  noise_correlation=self.hparams.noise_correlation,
                                  **self._shape_weighting(batch))
        if not self._all_finite(loss):
            raise FloatingPointError(f"loss is not finite ({loss.item()}) at step {self.global_step}; "
                                     "lower the learning rate or use bf16 instead of 16-mixed")
        now = time.perf_counter()
        if self._last_time is not None:
            self.log("train/clips_per_s", pixels.shape[0] * self.trainer.world_size / (now - self._last_time),
                     prog_bar=True, sync_dist=False, batch_size=pixels.shape[0])
        self._last_time = now
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=pixels.shape[0])
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=False,
                 batch_size=pixels.shape[0])
        if self.hparams.log_sample_indices and "index" in batch:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / f"indices_rank{self.global_rank}.txt", "a") as fh:
                fh.write(f"{self.global_step} " + " ".join(str(int(i)) for i in batch["index"]) + "\n")
        return loss

    def _shape_weighting(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The shape-weighted and grounding losses' arguments (none when both are off)."""
        weight, grounding = self.hparams.shape_loss_weight, self.hparams.grounding_loss_weight
        if weight == 1 and not grounding:
            return {}
        if "shape_mask" not in batch:
            option = "shape_loss_weight" if weight != 1 else "grounding_loss_weight"
            raise ValueError(f"{option} needs the batches' shape masks: train on the synthetic set "
                             "with `synthetic: {with_masks: true}`")
        out = {"shape_mask": batch["shape_mask"], "shape_weight": weight}
        if grounding:
            out.update(instance_masks=batch["instance_masks"], instance_words=batch["instance_words"],
                       grounding_weight=grounding)
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.hparams.seed + batch_idx)
        if self.hparams.stage == 0:
            loss = reconstruction_loss(self.model, batch["pixel_values"], self._lpips_module(),
                                       chroma_weight=self.hparams.chroma_weight)
        else:
            loss = denoising_loss(self.model, batch["pixel_values"], batch["caption"], self.noise_scheduler,
                                  caption_dropout=0.0, generator=g, use_cmpf=self.use_cmpf)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["pixel_values"].shape[0])
        return loss

    def configure_optimizers(self):
        named = self.trainable_named_parameters()
        offsets = [p for n, p in named if is_offset_parameter(n)]
        groups = [{"params": [p for n, p in named if not is_offset_parameter(n)]}]
        if offsets:
            groups.append({"params": offsets, "lr": self.hparams.lr * self.hparams.offset_lr_ratio})
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                      weight_decay=self.hparams.weight_decay)
        if self.hparams.lr_schedule == "constant" and not self.hparams.warmup_steps:
            return optimizer
        total = int(getattr(self._trainer, "max_steps", -1) or -1)
        if self.hparams.lr_schedule == "cosine" and total <= 0:
            raise ValueError("lr_schedule: cosine needs trainer.max_steps (the length of the decay)")
        factor = lr_factor_schedule(self.hparams.lr_schedule, total, self.hparams.warmup_steps,
                                    self.hparams.min_lr_ratio, self.hparams.decay_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------ data errors
    def _train_dataset(self):
        """The attached datamodule's training dataset, or None (no trainer, no datamodule)."""
        return getattr(getattr(self._trainer, "datamodule", None), "train_dataset", None)

    def _skipped(self) -> tuple[int, list[str]]:
        dataset = self._train_dataset()
        count = int(getattr(dataset, "num_skipped", 0) or 0)
        return count, (list(getattr(dataset, "skipped_paths", [])) if count else [])

    #: `VideoDataModule` leaves the unreadable-video limit to this module, which checks it at the end
    #: of every batch with all ranks agreeing (a rank raising alone would leave the others hanging).
    checks_unreadable_data = True

    def _check_unreadable(self, dataset: Any) -> None:
        """Stop every rank when more than `max_unreadable_fraction` of the videos tried were unreadable."""
        if dataset is None or not hasattr(dataset, "unreadable_error"):
            return
        message = dataset.unreadable_error()
        exceeded = message is not None
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            exceeded = trainer.strategy.reduce_boolean_decision(exceeded, all=False)
        if exceeded:
            from ..data.video_clips import TooManyUnreadableError

            raise TooManyUnreadableError(message or "another rank found too many unreadable videos (see its log)")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._check_unreadable(self._train_dataset())

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check_unreadable(getattr(getattr(self._trainer, "datamodule", None), "val_dataset", None))

    def on_train_epoch_end(self) -> None:
        count, _ = self._skipped()
        if count:
            self.log("data/skipped_videos", float(count), sync_dist=False)

    def on_train_end(self) -> None:
        count, paths = self._skipped()
        if count:
            shown = ", ".join(paths[:5]) + (", ..." if count > 5 else "")
            log.warning("rank %d skipped %d unreadable video(s): %s", self.global_rank, count, shown)

    # --------------------------------------------------------------------- EMA
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the EMA update: once per real step (not per accumulated batch), and
        before any `on_train_batch_end` callback saves a checkpoint, so a checkpoint of step k holds
        the EMA of step k."""
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← decay·ema + (1 − decay)·θ for every trained weight (θ itself at the first step)."""
        decay = self.hparams.ema_decay
        if not decay:
            return
        for name, p in self.trainable_named_parameters():
            avg = self._ema.get(name)
            if avg is None:
                self._ema[name] = p.detach().float().clone()
                continue
            if avg.device != p.device or avg.dtype != torch.float32:
                # restored from a checkpoint before Lightning moved the module (to the GPU): follow it
                avg = self._ema[name] = avg.to(device=p.device, dtype=torch.float32)
            avg.lerp_(p.detach().float(), 1 - decay)

    @torch.no_grad()
    def align_ema(self) -> None:
        """Put every EMA tensor on its parameter's device, in fp32.

        Lightning restores a checkpoint (`on_load_checkpoint`) before it moves the module to its
        device, so a resumed EMA starts on the CPU; this runs at the start of fit, after the move
        (and `update_ema` repeats the check per tensor).
        """
        if not self._ema:
            return
        params = dict(self.model.named_parameters())
        for name, avg in list(self._ema.items()):
            p = params.get(name)
            if p is not None and (avg.device != p.device or avg.dtype != torch.float32):
                self._ema[name] = avg.to(device=p.device, dtype=torch.float32)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._ema:
            checkpoint["lc4_ema"] = {k: v.cpu() for k, v in self._ema.items()}
        state = checkpoint.get("state_dict")
        if state is not None:  # frozen parts at full precision, not the working dtype
            for k, v in self._frozen_fp32.items():
                if f"model.{k}" in state:
                    state[f"model.{k}"] = v
        checkpoint["lc4_config"] = self.model.config.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the module may not be on its device yet (Lightning restores before it moves the module):
        # align_ema (start of fit) and update_ema put each tensor where its parameter is
        self._ema = {k: v.to(self.device, torch.float32) for k, v in (checkpoint.get("lc4_ema") or {}).items()}
        state = checkpoint.get("state_dict", {})
        for k in self._frozen_fp32:
            if f"model.{k}" in state:
                self._frozen_fp32[k] = state[f"model.{k}"].detach().to("cpu", torch.float32, copy=True)

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights (model-relative names), empty when EMA is off or nothing was trained."""
        return dict(self._ema)

    @contextlib.contextmanager
    def _full_precision_frozen(self) -> Iterator[None]:
        """Frozen parts cast down for mixed precision are fp32 (exact values) inside the block."""
        if not self._frozen_fp32:
            yield
            return
        parts = sorted({k.split(".")[0] for k in self._frozen_fp32})
        dtypes = {p: getattr(self.model, p).dtype for p in parts}
        for p in parts:
            getattr(self.model, p).to(dtype=torch.float32)
        try:
            with weights_swapped_in(self.model, self._frozen_fp32):
                yield
        finally:
            for p in parts:
                getattr(self.model, p).to(dtype=dtypes[p])

    def export(self, path: str | Path, use_ema: bool = True) -> Path:
        """Write the trained model in the pipeline's `save_pretrained` format (EMA weights by default).

        A run that trained the VAE first sets its latent `scaling_factor` to 1/std of the latents
        of the training data (`calibrate_latent_scale`), as SD's VAE was.
        """
        strategy = getattr(self._trainer, "strategy", None)
        if is_fsdp(strategy) and self._trainer.world_size > 1:
            raise RuntimeError("under FSDP every rank holds a shard of the weights: use export_sharded(path) "
                               "on every rank (ExportOnTrainEnd does), or lc4 export on a checkpoint")
        with self._full_precision_frozen(), weights_swapped_in(self.model, self._ema if use_ema else {}):
            if "vae" in self.train_parts:
                self.calibrate_latent_scale()
            return self.model.save_pretrained(path)

    def export_sharded(self, path: str | Path, use_ema: bool = True) -> Path | None:
        """`export` for a model sharded by FSDP: call on every rank (it gathers the weights, a
        collective); rank 0 rebuilds the model from its config on the CPU, loads the full weights and
        writes it; the other ranks return None. Without FSDP it is `export` on rank 0."""
        trainer = self.trainer
        if not is_fsdp(trainer.strategy):
            return self.export(path, use_ema=use_ema) if trainer.is_global_zero else None
        state = gather_full_state_dict(trainer.strategy)
        out = None
        try:
            if trainer.is_global_zero:
                model = LC4Model.from_config(self.model.config, seed=0)
                weights = model_state_from_checkpoint({"state_dict": state, "lc4_ema": self._ema}, use_ema=use_ema)
                missing, unexpected = model.load_state_dict(weights, strict=False)
                if missing or unexpected:
                    raise RuntimeError(f"gathered weights do not match the model ({len(missing)} missing, "
                                       f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")
                if "vae" in self.train_parts:
                    model.vae.to(self.device)
                    self.calibrate_latent_scale(model=model)
                    model.vae.to("cpu")
                out = model.save_pretrained(path)
        finally:  # also when rank 0 failed: the others must not wait for it forever
            trainer.strategy.barrier("lc4_export")
        return out

    def calibrate_latent_scale(self, num_clips: int = 64, model: LC4Model | None = None) -> float | None:
        """Set the VAE's `scaling_factor` from the first `num_clips` training clips; returns it.

        `model`: the model to calibrate (default this module's)."""
        from ..data.datamodule import collate_clips

        model = self.model if model is None else model
        dataset = self._train_dataset()
        if dataset is None:
            log.warning("no training dataset to calibrate the VAE's latent scale on; keeping %s",
                        model.vae.config.scaling_factor)
            return None
        count = min(num_clips, len(dataset))
        batches = [collate_clips([dataset[i] for i in range(start, min(start + 8, count))])
                   for start in range(0, count, 8)]
        scale = latent_scale(model, batches, max_batches=len(batches))
        model.set_latent_scale(scale)
        print(f"VAE latent scaling_factor set to {scale:.5f} (1/std of the training latents)", flush=True)
        return scale


def lr_factor_schedule(kind: str, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.1,
                       decay_steps: int | None = None):
    """step ↦ lr multiplier: linear warm-up over `warmup_steps`, then constant or a half cosine from 1
    to `min_ratio` at `total_steps` (held there after). With `decay_steps` the cosine takes only the
    run's last `decay_steps` steps and the rate is held at 1 before them: from scratch the demo VAE
    needs a long high rate and only then a decay (docs/results.md)."""
    start = warmup_steps if decay_steps is None else max(warmup_steps, total_steps - decay_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant" or step < start:
            return 1.0
        progress = min(1.0, (step - start) / max(1, total_steps - start))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_parts_of(stage: int) -> Sequence[str]:
    """Default trainable parts of a stage."""
    return STAGE_PARTS[stage]
