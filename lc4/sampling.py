"""Pure sampling functions: the CCF noise predictor and the scheduler loop.

`fused_noise_prediction` evaluates the UNet on every clip of a `ClipLayout` and fuses the
per-clip predictions into one per frame (eq. 8). In **exact** mode all clips run in one batch
and every temporal module's output is fused across clips as well (the paper's CCF); in
**bounded** mode clips run in chunks of `max_clips` and only noise predictions are fused, so peak
memory depends on the chunk size, not on the video's length.

`sample_latents` runs the scheduler loop; with `HeldFrames` it also holds known frames (colour
keyframes, `lc4.keyframes`) at the scheduler's noise level for the current step ("replacement
conditioning", as in diffusion inpainting, here across time), or clean, shown to the model at
timestep 0 (`HeldFrames.clean_input`, not in L-C4: a noised keyframe tells the other frames no more
than a noisy frame does). The replacement acts on the per-frame latent state, so it is the same for
every fusion mode; TDA and CCF carry the held frames' colour to the frames around them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange
from tqdm.auto import tqdm

from .ccf import ClipLayout
from .models.lc4 import LC4Model


@dataclass
class VideoConditioning:
    """What the UNet needs for every frame, stored compactly.

    `text` holds one embedding per (guidance branch, distinct prompt): (G, P, 77, d);
    `frame_prompt` (T,) picks a prompt per frame; `lum_moments` (T, 2c[+k], h, w)
    are E^lum's UNet input (`LC4Model.unet_lum_input`).
    G = 2 ([unconditional, conditional]) with classifier-free guidance, else 1.
    """

    text: torch.Tensor
    frame_prompt: torch.Tensor
    lum_moments: torch.Tensor

    @property
    def branches(self) -> int:
        return self.text.shape[0]

    def conditional(self) -> "VideoConditioning":
        """The conditional branch alone (the last one)."""
        return VideoConditioning(self.text[-1:], self.frame_prompt, self.lum_moments)


def _clip_fuser(layout: ClipLayout, branches: int, clips: int):
    """Temporal-module hook for exact CCF: fuse each frame's update over all clips that hold it."""

    def fuse(update: torch.Tensor, geometry) -> torch.Tensor:
        grouped = rearrange(update, "(g n f) t c -> g n f t c", g=branches, n=clips)
        fused = torch.stack([layout.fuse_and_scatter(g) for g in grouped])
        return rearrange(fused, "g n f t c -> (g n f) t c")

    return fuse


def fused_noise_prediction(
    model: LC4Model,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    cond: VideoConditioning,
    layout: ClipLayout,
    *,
    exact: bool,
    max_clips: int = 4,
) -> torch.Tensor:
    """Per-frame ε̂ (G, T, c, h, w) from clip-wise UNet evaluations fused with the layout's weights.

    The per-frame state (`latents`, `cond.lum_moments`, the fusion sums) stays on `latents.device`;
    only each chunk's clips travel to the UNet's device, so bounded mode can keep a film's state in
    host memory while the accelerator holds one chunk. `cond.text` lives on the UNet's device.
    `timestep` is one value, or one per frame (T,) (held clean keyframes at 0).
    """
    g = cond.branches
    state, unet_device = latents.device, model.unet.device
    acc = [layout.accumulator(latents.shape[1:], dtype=torch.float32, device=state) for _ in range(g)]
    chunks = [slice(0, layout.n_clips)] if exact else list(layout.chunks(max_clips))
    n_frames = layout.clip_frames
    t = timestep.to(unet_device) if isinstance(timestep, torch.Tensor) else timestep
    per_frame = isinstance(t, torch.Tensor) and t.ndim == 1
    # feature fusion only matters where clips overlap (each frame in one clip: fusing is the identity)
    fuse_features = exact and layout.fuses_features and layout.frame_evaluations > layout.num_frames
    for sl in chunks:
        idx = layout.clips[sl].to(state)  # (k, N)
        k = idx.shape[0]
        flat = idx.flatten()
        x = latents[flat].to(unet_device).repeat(g, 1, 1, 1)
        lum = cond.lum_moments[flat].to(unet_device).repeat(g, 1, 1, 1)
        text = rearrange(cond.text[:, cond.frame_prompt[flat].to(cond.text.device)], "g n t d -> (g n) t d")
        fuser = _clip_fuser(layout, g, k) if fuse_features else None
        t_chunk = t[flat.to(unet_device)].repeat(g) if per_frame else t
        with model.unet.temporal_fusion(fuser):
            eps = model.unet(x.to(model.unet.dtype), t_chunk, text.to(unet_device, model.unet.dtype),
                             num_frames=n_frames, lum_moments=lum)
        eps = rearrange(eps.float().to(state), "(g k f) c h w -> g k f c h w", g=g, k=k)
        weights = layout.weights[sl].to(state)
        for branch in range(g):
            acc[branch].add(idx, eps[branch], weights)
        del x, lum, text, eps  # the chunk's inputs and outputs are not kept into the next chunk
    return torch.stack([a.result() for a in acc])


def guided(eps: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on stacked [unconditional, conditional] predictions."""
    if eps.shape[0] == 1:
        return eps[0]
    uncond, text = eps[0], eps[1]
    return uncond + guidance_scale * (text - uncond)


def sentence_gate(independent: torch.Tensor, width: float) -> torch.Tensor:
    """Per-pixel weight in (0, 1] that leaves the temporal term where the sentence says little.

    `independent` (2, T, c, h, w) holds the unconditional and conditional ε̂ with the temporal layers
    off; r = the RMS over channels of their difference (the sentence's own term, before its scale).
    Returns 1 / (1 + (r / width)^4), (T, 1, h, w): about 1 where r ≪ width (colours the sentence leaves
    open), about 0 where r ≫ width (the regions whose colours it names). Not in L-C4 (docs/decisions.md).
    """
    r = (independent[1] - independent[0]).float().pow(2).mean(dim=1, keepdim=True).sqrt()
    return 1.0 / (1.0 + (r / width) ** 4)


def temporally_guided(coupled: torch.Tensor, independent: torch.Tensor, guidance_scale: float,
                      temporal_scale: float, gate_width: float | None = None) -> torch.Tensor:
    """Guidance with one scale for the sentence and one for the temporal layers (not in L-C4).

    `coupled` (1, T, ...) is the conditional ε̂ with the temporal layers on; `independent` (G, T, ...)
    the [unconditional,] conditional ε̂ with them off (`LC4UNet.frames_independent`). Returns
    ε̂_u + s·(ε̂_c − ε̂_u) + s_T·(ε̂_c^temporal − ε̂_c), the frame-independent terms guided by the sentence.
    Classifier-free guidance with both branches through the temporal layers also multiplies by s
    whatever the temporal layers do differently in the two branches; here the sentence's scale acts
    on the image model's text term alone and the frames' coupling gets its own scale (s_T = 0: the
    frames independent; s_T = 1: the coupling as trained, unamplified). `gate_width` weights the
    temporal term per pixel by `sentence_gate` (None: everywhere in full), so that it acts on what the
    sentence leaves open and not against the colours it names.
    """
    term = coupled[0] - independent[-1]
    if gate_width is not None:
        if independent.shape[0] < 2:
            raise ValueError("temporal_gate needs the unconditional branch: use guidance_scale != 1")
        term = term * sentence_gate(independent, gate_width).to(term)
    return guided(independent, guidance_scale) + temporal_scale * term


@dataclass
class HeldFrames:
    """Frames whose clean latents are known, held during the first `steps` denoising steps.

    `indices` (K,) are frame numbers, `clean` (K, c, h, w) their clean (scaled VAE) latents, `noise`
    (K, c, h, w) one noise draw used at every step (so the held frames follow one consistent
    forward-diffusion path). Before step i < `steps` a held frame's latent is
    `scheduler.add_noise(clean, noise, timesteps[i])`; when every step is held, the loop ends with
    the clean latents themselves. `steps = 0` holds nothing (the run is the same as without).
    `clean_input`: during the held steps the frames are their clean latents instead, and the model
    sees them at timestep 0 (per-frame timesteps); after the last held step they rejoin the forward
    process at the next step's noise level.
    """

    indices: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor
    steps: int
    clean_input: bool = False

    def __post_init__(self) -> None:
        k = self.indices.shape[0]
        if self.indices.ndim != 1 or self.clean.shape[0] != k or self.noise.shape != self.clean.shape:
            raise ValueError(f"held frames need indices (K,), clean and noise (K, c, h, w) of one shape; got "
                             f"{tuple(self.indices.shape)}, {tuple(self.clean.shape)}, {tuple(self.noise.shape)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"held steps must be an integer >= 0, got {self.steps!r}")

    def put(self, latents: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """`latents` with the held frames' rows replaced by `values` (a new tensor)."""
        idx = self.indices.to(latents.device)
        return latents.index_copy(0, idx, values.to(latents.device, latents.dtype))

    def noisy(self, scheduler, timestep: torch.Tensor) -> torch.Tensor:
        """The held frames at the noise level of `timestep`: the scheduler's forward process."""
        clean = self.clean.to(torch.float32)
        t = torch.as_tensor(timestep, device=clean.device).reshape(1).repeat(clean.shape[0])
        return scheduler.add_noise(clean, self.noise.to(clean), t)

    def before_step(self, scheduler, step: int) -> torch.Tensor:
        """The held frames' latents during step `step` (< `steps`): noised to its level, or clean."""
        return self.clean.to(torch.float32) if self.clean_input else self.noisy(scheduler, scheduler.timesteps[step])

    def frame_timesteps(self, timestep: torch.Tensor, frames: int) -> torch.Tensor:
        """(frames,) timesteps: `timestep` for every frame, 0 for the held ones (`clean_input`)."""
        t = torch.as_tensor(timestep).reshape(()).repeat(frames)
        return t.index_fill(0, self.indices.to(t.device), 0)


def check_add_noise(scheduler) -> None:
    """Holding frames needs the scheduler's forward process (`add_noise`); say which scheduler lacks it."""
    if not callable(getattr(scheduler, "add_noise", None)):
        name = type(scheduler).__name__
        raise ValueError(f"keyframes need a scheduler with add_noise, and {name} has none: use DDIMScheduler, "
                         "DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler or another that has it")


def check_noise_correlation(correlation: float, name: str = "noise_correlation") -> None:
    """One line for a correlation outside [0, 1] (NaN included); `name` is the option as the caller spells it."""
    if isinstance(correlation, bool) or not isinstance(correlation, (int, float)) or not 0.0 <= correlation <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] (0: independent frames), got {correlation!r}")


def check_temporal_guidance(scale: float | None, name: str = "temporal_guidance") -> None:
    """One line for a temporal guidance scale that is not None or a finite number >= 0; `name` as in the caller."""
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (scale >= 0 and scale < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0 (unset: classifier-free guidance through "
                         f"the temporal layers, as in L-C4), got {scale!r}")


def check_temporal_gate(width: float | None, temporal_guidance: float | None, guidance_scale: float,
                        names: tuple[str, str, str] = ("temporal_gate", "temporal_guidance", "guidance_scale")) -> None:
    """One line for a gate width that is not None or a finite number > 0, or that lacks what it gates."""
    if width is None:
        return
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < float("inf")):
        raise ValueError(f"{names[0]} must be a finite number > 0 (unset: no gate), got {width!r}")
    if temporal_guidance is None:
        raise ValueError(f"{names[0]} gates the temporal term of {names[1]}: set {names[1]} too")
    if guidance_scale == 1.0:
        raise ValueError(f"{names[0]} reads the sentence's term, which {names[2]} 1 does not compute: "
                         f"use {names[2]} != 1")


def initial_noise(shape: tuple[int, ...], generator: torch.Generator, correlation: float = 0.0) -> torch.Tensor:
    """Initial latents (T, c, h, w) ~ N(0, 1) per element, with correlation `correlation` between frames.

    The mixed noise prior (`mixed_noise` with the whole video as one clip), on the generator's
    device. ρ = 0 is the usual i.i.d. noise; ρ = 1 gives every frame the same noise. Diffusion
    models settle coarse choices, such as which colour an unnamed object takes, from the initial
    noise in the first steps; frames drawn independently may settle them differently, and no later
    fusion undoes that.
    """
    return mixed_noise(shape, shape[0], correlation, generator, generator.device)


def mixed_noise(shape: tuple[int, ...], frames: int, correlation: float = 0.0,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise `(b·frames, c, h, w)` ~ N(0, 1) per element whose frames correlate by ρ = `correlation`
    within each clip of `frames`: √ρ·ε_clip + √(1 − ρ)·ε_frame (the mixed prior of PYoCo, Ge et al.
    2023). ρ = 0 draws exactly what `torch.randn(shape)` would. Training on it
    (`LC4Module(noise_correlation=ρ)`) matches the prior the pipeline samples from at that ρ."""
    check_noise_correlation(correlation)
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device=device)
    if correlation == 0.0:
        return noise
    clips = rearrange(noise, "(b f) c h w -> b f c h w", f=frames)
    shared = torch.randn((clips.shape[0], 1, *clips.shape[2:]), generator=generator, dtype=torch.float32,
                         device=device)
    mixed = correlation ** 0.5 * shared + (1.0 - correlation) ** 0.5 * clips
    return rearrange(mixed, "b f c h w -> (b f) c h w")


def _accepts(fn: Callable, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def sample_latents(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    scheduler,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = True,
    start_step: int = 0,
    held: HeldFrames | None = None,
) -> torch.Tensor:
    """Run `scheduler` from `latents` (already scaled by init_noise_sigma) with the ε-model `denoise`.

    `start_step` skips the first steps (resuming a saved run: `latents` are then the latents after
    step `start_step - 1`; `start_step == len(timesteps)` runs no step). `callback(i, t, latents)`
    is called after every step. NaN/Inf latents raise `FloatingPointError` at once.
    `held`: frames held at the current step's noise level (or clean, `held.clean_input`: then
    `denoise` gets per-frame timesteps (T,)) before each of the first `held.steps` steps (set before
    the first step, and after each step for the next one; with every step held the loop ends with
    their clean latents); the callback sees the latents after the replacement, so a resumed run
    continues exactly. A scheduler without `add_noise` raises `ValueError`.
    """
    timesteps = scheduler.timesteps
    if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= len(timesteps):
        raise ValueError(f"start_step must be an integer in [0, {len(timesteps)}] (the number of steps), "
                         f"got {start_step!r}")
    step_kwargs = {"generator": generator} if _accepts(scheduler.step, "generator") else {}
    n = len(timesteps)
    hold = 0 if held is None else min(held.steps, n)
    if hold:
        check_add_noise(scheduler)
    if start_step < hold:  # (a resumed run's latents already hold them: the same values again)
        latents = held.put(latents, held.before_step(scheduler, start_step))
    remaining = timesteps[start_step:]
    bar = tqdm(remaining, desc="denoising", disable=not progress, initial=start_step, total=n)
    for i, t in enumerate(bar, start=start_step):
        model_input = scheduler.scale_model_input(latents, t)
        if i < hold and held.clean_input:  # clean frames at timestep 0: no input scaling (σ_0 ≈ 0)
            eps = denoise(held.put(model_input, held.clean), held.frame_timesteps(t, latents.shape[0]))
        else:
            eps = denoise(model_input, t)
        del model_input
        latents = scheduler.step(eps.to(latents.dtype), t, latents, **step_kwargs).prev_sample
        del eps  # not alive during the next step's UNet calls: one latent-sized buffer less at the peak
        if i + 1 < hold:  # held during the next step
            latents = held.put(latents, held.before_step(scheduler, i + 1))
        elif i + 1 == hold < n and held.clean_input:  # released: back on the forward process
            latents = held.put(latents, held.noisy(scheduler, timesteps[i + 1]))
        elif i + 1 == n and hold == n:  # held to the end: the known clean latents
            latents = held.put(latents, held.clean)
        if not torch.isfinite(latents).all():
            raise FloatingPointError(f"latents became NaN/Inf at step {i} (t={int(t)}): try --dtype float32")
        if callback is not None:
            callback(i, t, latents)
    return latents
