"""Training objectives of L-C4: ε-prediction MSE (eq. 9, stages 1–2) and stage-0 reconstruction."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ..color import rgb_to_lab, to_grey
from ..models.lc4 import LC4Model
from ..sampling import mixed_noise
from .grounding import grounding_loss, instance_token_indicator, recorded_cross_attention


def grey_input(rgb: torch.Tensor) -> torch.Tensor:
    """Lab-L grey version of `(n, 3, h, w)` RGB in [-1, 1], still in [-1, 1] (the model's input)."""
    return to_grey((rgb.float() + 1) / 2) * 2 - 1


def chroma(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB (a, b) / 100 of `(n, 3, h, w)` RGB in [-1, 1] (differentiable; clamped into the gamut)."""
    return rgb_to_lab(((rgb + 1) / 2).clamp(0, 1), channel_dim=1)[:, 1:] / 100


def drop_captions(captions: Sequence[str], p: float, generator: torch.Generator | None = None,
                  paired: bool = False) -> list[str]:
    """Replace each caption by "" with probability p (classifier-free guidance training).

    `paired`: the second half of the list are the first half's twins and share their draws, so a
    pair is either contrasted on its two captions or both unconditioned.
    """
    if p <= 0:
        return list(captions)
    device = generator.device if generator is not None else None  # a CUDA generator draws on CUDA
    keep = torch.rand(len(captions) // 2 if paired else len(captions), generator=generator, device=device) >= p
    if paired:
        keep = keep.repeat(2)
    return [c if k else "" for c, k in zip(captions, keep.tolist())]


def denoising_loss(
    model: LC4Model,
    pixel_values: torch.Tensor,
    captions: Sequence[str],
    noise_scheduler,
    *,
    caption_dropout: float = 0.1,
    generator: torch.Generator | None = None,
    use_cmpf: bool = True,
    high_noise_fraction: float = 0.0,
    shape_mask: torch.Tensor | None = None,
    shape_weight: float = 1.0,
    paired: bool = False,
    instance_masks: torch.Tensor | None = None,
    instance_words: Sequence[str] | None = None,
    grounding_weight: float = 0.0,
    context_frame_fraction: float = 0.0,
    noise_correlation: float = 0.0,
) -> torch.Tensor:
    """Eq. 9: ‖ε − ε_θ(z_t, t, y^tex, y^lum)‖² for clips `(b, f, 3, h, w)` in [-1, 1].

    One timestep per clip (all its frames share it); text dropped to "" with `caption_dropout`;
    `use_cmpf=False` conditions on plain CLIP embeddings (stage 1). A scheduler configured with
    `prediction_type: v_prediction` trains the v-target instead (same network, same sampler).
    `high_noise_fraction` of the clips draw their timestep from the noisiest 30% (`sample_timesteps`).
    `shape_mask` `(b, f, h, w)` in [0, 1] with `shape_weight` > 1 weights the error on those pixels
    that much more (`weighted_mse`): the objects whose colours the sentence names are a small part
    of a frame, so the plain mean spends most of its gradient on the background.
    `paired`: the second half of the batch are the first half's colour twins (same grey clips, other
    captions and colours) and share their noise, timestep and caption dropout, so the pair's two
    losses differ only through what the sentence says.
    `grounding_weight` > 0 adds that weight times `grounding.grounding_loss` (not part of L-C4): with
    `instance_masks` `(b, f, n, h, w)` and `instance_words` ("red star;blue circle" per clip), the
    pixels of each shape are asked to attend to its own words rather than the other shapes'.
    `context_frame_fraction` > 0 (not part of L-C4; `context_timesteps`): that share of the clips has
    one frame at a lower noise level than the rest, so the temporal layers learn to carry what a
    cleaner frame shows (a colour the sentence leaves open) to the frames around it.
    `noise_correlation` ρ > 0 (not part of L-C4; `sampling.mixed_noise`): each clip's frames share √ρ of their
    noise, the mixed prior that `LC4Pipeline(noise_correlation=ρ)` samples from.
    """
    b, f = pixel_values.shape[:2]
    if paired and b % 2:
        raise ValueError(f"a paired batch holds clips and their twins, so an even number of clips; got {b}")
    rgb = rearrange(pixel_values, "b f c h w -> (b f) c h w")
    with torch.no_grad():
        latents = model.encode_frames(rgb, generator=generator).float()
        kept = drop_captions(captions, caption_dropout, generator, paired)
        text = model.encode_prompt(kept)
    lum = model.encode_luminance(grey_input(rgb))
    y_tex = model.fuse_text(text, lum, f, use_cmpf=use_cmpf)
    shape = (latents.shape[0] // 2, *latents.shape[1:]) if paired else latents.shape
    noise = mixed_noise(shape, f, noise_correlation, generator, latents.device)
    t = sample_timesteps(b // 2 if paired else b, noise_scheduler.config.num_train_timesteps, high_noise_fraction,
                         generator, latents.device)
    if paired:
        noise, t = noise.repeat(2, 1, 1, 1), t.repeat(2)
    t = t.repeat_interleave(f)
    if context_frame_fraction > 0 and f > 1:
        t = context_timesteps(t, f, context_frame_fraction, generator)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    if grounding_weight > 0:
        if instance_masks is None or instance_words is None:
            raise ValueError("grounding_weight needs instance_masks and instance_words")
        with recorded_cross_attention(model.unet, detach=False) as maps:
            pred = model.predict_noise(noisy, t, y_tex, lum, f)
        indicator = instance_token_indicator(kept, instance_words, model.tokenizer, instance_masks.shape[2],
                                             text.embeddings.shape[1]).to(latents.device).repeat_interleave(f, dim=0)
        masks = rearrange(instance_masks.to(latents.device), "b f n h w -> (b f) n h w")
        grounding = grounding_weight * grounding_loss(maps, masks, indicator)
    else:
        pred, grounding = model.predict_noise(noisy, t, y_tex, lum, f), 0.0
    target = prediction_target(noise_scheduler, latents, noise, t)
    if shape_mask is None or shape_weight == 1.0:
        return F.mse_loss(pred.float(), target) + grounding
    return weighted_mse(pred.float(), target, shape_pixel_weight(shape_mask, shape_weight, latents)) + grounding


def context_timesteps(t: torch.Tensor, frames: int, fraction: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-frame timesteps `(b f,)` in which `fraction` of the clips have one random frame at a
    timestep drawn uniformly below the clip's: a cleaner context frame inside a noisy clip."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"context_frame_fraction must be in [0, 1], got {fraction}")
    clips = rearrange(t, "(b f) -> b f", f=frames).clone()
    b = clips.shape[0]
    dev = clips.device
    chosen = torch.rand(b, generator=generator, device=dev) < fraction
    frame = torch.randint(0, frames, (b,), generator=generator, device=dev)
    lower = (torch.rand(b, generator=generator, device=dev) * clips[:, 0].float()).long()
    rows = torch.nonzero(chosen).flatten()
    clips[rows, frame[rows]] = lower[rows]
    return rearrange(clips, "b f -> (b f)")


def shape_pixel_weight(shape_mask: torch.Tensor, shape_weight: float, like: torch.Tensor) -> torch.Tensor:
    """`(n, 1, h, w)` weights for errors shaped like `like` `(n, c, h, w)`: 1, and `shape_weight` on
    the shapes of `shape_mask` `(b, f, H, W)`, area-pooled to `like`'s grid (the latents' in stages
    1–2, the pixels' in stage 0)."""
    mask = rearrange(shape_mask.to(like.device, torch.float32), "b f h w -> (b f) 1 h w")
    return 1 + (shape_weight - 1) * F.interpolate(mask, like.shape[-2:], mode="area")


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ w·(pred − target)² / Σ w over `(n, c, h, w)` errors and `(n, 1, h, w)` weights ≥ 0."""
    return weighted_mean((pred - target) ** 2, weight)


def weighted_mean(errors: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ w·e / Σ w over `(n, c, h, w)` errors and `(n, 1, h, w)` weights ≥ 0.

    Normalised by the weights, so a uniform weight gives exactly the plain mean and the loss keeps
    its scale (and the learning rate its meaning) whatever the weighting.
    """
    if weight.shape[-2:] != errors.shape[-2:] or weight.shape[0] != errors.shape[0]:
        raise ValueError(f"weight {tuple(weight.shape)} does not match the errors {tuple(errors.shape)}")
    w = weight.expand_as(errors)
    return (w * errors).sum() / w.sum().clamp_min(1e-12)


def sample_timesteps(n: int, num_train_timesteps: int, high_noise_fraction: float = 0.0,
                     generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n uniform training timesteps, a `high_noise_fraction` of them redrawn from the noisiest 30%.

    A colorizer decides each region's colour at high noise (the rest of the schedule refines a
    colour already in z_t), so a model trained from nothing on few steps learns the sentence
    faster when more of its samples land there (docs/decisions.md). 0 is the paper's uniform draw.
    """
    if not 0.0 <= high_noise_fraction <= 1.0:
        raise ValueError(f"high_noise_fraction must be in [0, 1], got {high_noise_fraction}")
    t = torch.randint(0, num_train_timesteps, (n,), generator=generator, device=device)
    if high_noise_fraction > 0:
        low = int(num_train_timesteps * 0.7)
        high = torch.randint(low, num_train_timesteps, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device) < high_noise_fraction
        t = torch.where(pick, high, t)
    return t


def prediction_target(noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to output: ε, or v = √ᾱ·ε − √(1−ᾱ)·z₀ for v-prediction schedulers."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, t)
    raise ValueError(f"unsupported prediction_type {kind!r}: use 'epsilon' or 'v_prediction'")


@torch.no_grad()
def latent_scale(model: LC4Model, batches, max_batches: int = 16) -> float:
    """1 / std of the VAE's unscaled latent samples over `batches` of `(b, f, 3, h, w)` pixels.

    The LDM recipe (SD1.5's 0.18215 is this number for its VAE): with it the scaled latents have
    unit variance, which the noise schedule assumes. Used after training a VAE from scratch.
    """
    total, sq, n = 0.0, 0.0, 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        pixels = batch["pixel_values"] if isinstance(batch, dict) else batch
        rgb = rearrange(pixels, "b f c h w -> (b f) c h w") if pixels.ndim == 5 else pixels
        z = model.vae.encode(rgb.to(model.vae.device, model.vae.dtype)).latent_dist.sample().double()
        total, sq, n = total + z.sum().item(), sq + (z * z).sum().item(), n + z.numel()
    if n == 0:
        raise ValueError("latent_scale needs at least one batch")
    std = (sq / n - (total / n) ** 2) ** 0.5
    return 1.0 / std


def reconstruction_loss(model: LC4Model, pixel_values: torch.Tensor, lpips=None, kl_weight: float = 1e-6,
                        generator: torch.Generator | None = None, chroma_weight: float = 0.0,
                        shape_mask: torch.Tensor | None = None, shape_weight: float = 1.0) -> torch.Tensor:
    """Stage 0: D(E(x), skips(E^lum(grey(x)))) ≈ x; L1 (+ LPIPS when a LPIPS module is given).

    `chroma_weight` adds that weight times the L1 of CIELAB (a, b) / 100: inference replaces the
    output's lightness by the input's, so chroma is all the decoder has to get right, and small
    hue errors cost little in RGB L1. `shape_mask` `(b, f, h, w)` with `shape_weight` > 1 weights
    both L1 terms on those pixels, as `denoising_loss` weights the denoising error: the small
    shapes' colours, not the background's, are what the benchmark scores.

    With a trainable VAE (toy models trained from scratch) the encoder samples its posterior (from
    `generator`, so a resumed run draws the same samples) and a KL term weighted `kl_weight` (SD's
    value) keeps the latent scale usable by the UNet.
    """
    rgb = rearrange(pixel_values, "b f c h w -> (b f) c h w") if pixel_values.ndim == 5 else pixel_values
    train_vae = any(p.requires_grad for p in model.vae.parameters())
    with torch.set_grad_enabled(train_vae and torch.is_grad_enabled()):
        dist = model.vae.encode(rgb.to(model.vae.dtype)).latent_dist
        latents = (dist.sample(generator) if train_vae else dist.mode()) * model.vae.config.scaling_factor
    lum = model.encode_luminance(grey_input(rgb))
    recon = model.decode(latents, lum).float()
    if shape_mask is None or shape_weight == 1.0:
        weight = torch.ones_like(recon[:, :1])
    else:
        weight = shape_pixel_weight(shape_mask, shape_weight, recon)
    loss = weighted_mean((recon - rgb.float()).abs(), weight)
    if chroma_weight:
        loss = loss + chroma_weight * weighted_mean((chroma(recon) - chroma(rgb.float())).abs(), weight)
    if lpips is not None:
        loss = loss + lpips(recon, rgb.float()).mean()
    if train_vae:
        loss = loss + kl_weight * dist.kl().mean()
    return loss
