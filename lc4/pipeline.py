"""`LC4Pipeline`: colorize a grey video from a sentence (L-C4 §3.4, SPEC §3).

Flow: frames → Lab-L grey at working resolution (aspect kept, sides multiples of 8) → E^lum
moments per frame → one text embedding per prompt (CMPF's visual prompt from up to N^f frames
spread over the frames that prompt covers) → DDIM (or any diffusers scheduler) with classifier-free guidance
and Cross-Clip Fusion → decode with E^lum skips, chunk by chunk → by default the predicted chroma
upsampled to the input's full resolution and recombined with the input's own CIELAB L.

Colour keyframes (`keyframes={frame: image}`, `lc4.keyframes`): each is encoded with the VAE and
its frame is held at the scheduler's noise level for the current step (`lc4.sampling.HeldFrames`),
so TDA and CCF carry its colour to the frames around it while the prompt governs the rest.

Memory: during denoising, per frame only its latent, its E^lum moments and the fusion sums are
kept (O(T), small: 5 latent-sized float32 buffers per frame with guidance); UNet activations are
bounded by `clips_per_chunk` in bounded/none modes. The working-resolution grey frames are only
held while the conditioning is built; decoding re-reads the source chunk by chunk (grey for the
E^lum skips, full resolution for the luminance recombination), so a film is streamed from its file.

The frame count is the decoder's, not the container header's: the prompt schedule and every
per-frame buffer follow the frames actually decoded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from einops import rearrange

from . import ccf
from .color import fit_size, is_grey, recombine_luminance, resize, to_grey
from .keyframes import (check_indices, check_keyframe_options, hold_steps, keyframe_latents, keyframe_specs,
                        load_keyframes)
from .models.config import LC4Config
from .models.lc4 import LC4Model
from .prompts import PromptSchedule, parse_prompt_schedule, truncated_words
from .sampling import (HeldFrames, VideoConditioning, check_add_noise, check_noise_correlation, check_temporal_gate,
                       check_temporal_guidance, fused_noise_prediction, guided, initial_noise, sample_latents,
                       temporally_guided)

log = logging.getLogger("lc4")

FUSION_MODES = ("auto", "exact", "bounded", "none")
WINDOWS = ("skip", "sliding")
WEIGHTINGS = ("distance", "uniform")
DEFAULT_MEMORY_BUDGET_FRAMES = 64
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class LC4Output:
    """Colour frames, uint8 RGB (T, H, W, 3): full input resolution unless recombination is off."""

    frames: np.ndarray


class FrameSource:
    """Frames from an array/tensor/PIL list (held) or a path (re-read in chunks when needed)."""

    def __init__(self, video: Any):
        self.path: Path | None = None
        self._frames: np.ndarray | None = None
        if isinstance(video, (str, os.PathLike)):
            from .io import probe

            self.path = Path(video)
            info = probe(self.path)
            self.num_frames, self.height, self.width = info.num_frames, info.height, info.width
        else:
            self._frames = as_uint8_video(video)
            self.num_frames, self.height, self.width = self._frames.shape[:3]
        if self.num_frames < 1:
            raise ValueError(f"the video has no frames: {video if self.path else 'empty array'}")

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive (n, H, W, 3) uint8 chunks covering the video in order."""
        if self._frames is not None:
            for start in range(0, self.num_frames, size):
                yield self._frames[start : start + size]
        else:
            from .io import iter_frames

            yield from iter_frames(self.path, chunk_size=size)


def as_uint8_video(video: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from an array/tensor (uint8, or float in [0, 1]; grey (T, H, W) too) or PIL list."""
    if isinstance(video, (list, tuple)):
        video = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in video])
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu()
        if video.ndim == 4 and video.shape[1] in (1, 3) and video.shape[-1] not in (1, 3):
            video = rearrange(video, "t c h w -> t h w c")
        video = video.numpy()
    video = np.asarray(video)
    if video.ndim == 3 and video.shape[-1] not in (1, 3):
        video = video[..., None]
    if video.ndim == 3:  # a single (H, W, C) image
        video = video[None]
    if video.ndim != 4 or video.shape[-1] not in (1, 3):
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {tuple(video.shape)}")
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    if video.shape[0] == 0:
        raise ValueError("the video has no frames: empty array")
    if video.dtype != np.uint8:
        if not np.issubdtype(video.dtype, np.floating):
            raise ValueError(f"frames must be uint8 or float in [0, 1], got {video.dtype}")
        if not np.isfinite(video).all():
            raise ValueError("frames contain NaN or Inf values")
        video = np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)
    return video


def _check_scheduler_name(name: Any) -> None:
    """The same test as `LC4Model.noise_scheduler`, made before a model is loaded."""
    import diffusers

    if not isinstance(name, str) or not name.endswith("Scheduler") or getattr(diffusers, name, None) is None:
        raise ValueError(f"unknown scheduler {name!r}: use a diffusers scheduler class name such as DDIMScheduler")


class LC4Pipeline:
    """Language-guided video colorization with an `LC4Model` and a diffusers scheduler."""

    def __init__(self, model: LC4Model, scheduler: Any | None = None):
        self.model = model.eval()
        self.scheduler = scheduler if scheduler is not None else model.noise_scheduler("DDIMScheduler")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        scheduler: str | None = None) -> "LC4Pipeline":
        """A saved L-C4 model (folder or hub id); `scheduler` names any diffusers scheduler class.

        The scheduler name and the model folder (`lc4.models.lc4.check_model_folder`) are checked
        before any weights are read; each problem is one ValueError / FileNotFoundError line.
        """
        if scheduler is not None:
            _check_scheduler_name(scheduler)
        if isinstance(torch_dtype, str):
            if torch_dtype not in DTYPES:
                raise ValueError(f"unknown torch_dtype {torch_dtype!r}; choose float32, float16 or bfloat16")
            torch_dtype = DTYPES[torch_dtype]
        model = LC4Model.from_pretrained(name_or_path, torch_dtype=torch_dtype)
        return cls(model, model.noise_scheduler(scheduler) if scheduler else None)

    @classmethod
    def from_sd15(cls, name_or_path: str | os.PathLike, config: LC4Config | None = None, **kw: Any) -> "LC4Pipeline":
        """A new L-C4 around SD1.5 (new parts zero-initialised): reproduces SD1.5 until trained."""
        return cls(LC4Model.from_sd15(name_or_path, config=config, **kw))

    @classmethod
    def from_single_file(cls, path: str | os.PathLike, config: LC4Config | None = None, **kw: Any) -> "LC4Pipeline":
        """A new L-C4 around an original-layout SD1.5 checkpoint."""
        return cls(LC4Model.from_single_file(path, config=config, **kw))

    @classmethod
    def from_config(cls, config: LC4Config | None = None, seed: int | None = None) -> "LC4Pipeline":
        """Random weights (tests, experiments)."""
        return cls(LC4Model.from_config(config or LC4Config.tiny(), seed=seed))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save the model (the scheduler's noise schedule is part of it)."""
        return self.model.save_pretrained(path)

    def set_scheduler(self, name: str) -> None:
        """Switch to another diffusers scheduler class (e.g. 'DPMSolverMultistepScheduler')."""
        self.scheduler = self.model.noise_scheduler(name)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None) -> "LC4Pipeline":
        """Move/cast the model; dtype float16/bfloat16 runs everything in that precision."""
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}; choose float32, float16 or bfloat16")
            dtype = DTYPES[dtype]
        self.model.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.unet.parameters()).device

    def enable_attention_backend(self) -> str:
        """Apply the process-wide attention setting (`lc4.models.attention`) to the diffusers parts.

        TDA and CMPF read the setting at every call; the UNet's and VAE's own attention switch to
        xformers here when the setting resolves to it (CUDA only). Returns the backend in use.
        """
        from .models.attention import resolve_backend

        backend = resolve_backend(self.device)
        if backend == "xformers":  # CUDA only: untested on the CPU-only development machines
            self.model.unet.unet.enable_xformers_memory_efficient_attention()
            self.model.vae.enable_xformers_memory_efficient_attention()
        return backend

    # ---------------------------------------------------------------- inference
    def __call__(self, video: Any, prompt: str | Sequence[str], **kwargs: Any) -> LC4Output:
        """Colorize `video` (array (T,H,W,3), tensor, PIL list, or path) following `prompt`.

        Keyword options are those of `colorize_chunks`; returns all frames in memory.
        """
        return LC4Output(np.concatenate(list(self.colorize_chunks(video, prompt, **kwargs))))

    @torch.no_grad()
    def colorize_chunks(
        self,
        video: Any,
        prompt: str | Sequence[str],
        *,
        negative_prompt: str = "",
        num_inference_steps: int = 50,
        guidance_scale: float = 4.5,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        resolution: int | None = None,
        fusion: str = "auto",
        window: str = "skip",
        weighting: str = "distance",
        max_interval: int | None = None,
        clips_per_chunk: int = 4,
        memory_budget_frames: int | None = None,
        keep_luminance: bool = True,
        vae_chunk_size: int = 8,
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
        progress: bool = True,
        resume_latents: tuple[int, torch.Tensor] | None = None,
        keyframes: Any = None,
        keyframe_strength: float = 1.0,
        keyframe_luminance: str = "video",
        keyframe_hold: str = "noised",
        noise_correlation: float = 0.0,
        temporal_guidance: float | None = None,
        temporal_gate: float | None = None,
    ) -> Iterator[np.ndarray]:
        """Colorize and yield output frames chunk by chunk (uint8 RGB (n, H, W, 3)).

        fusion: `exact` (paper's CCF: TDA outputs and noise fused across clips), `bounded` (noise
        only, clips in chunks of `clips_per_chunk`, memory independent of length), `none` (clip by
        clip, in chunks of `clips_per_chunk`), `auto` (exact while all clip evaluations, times 2
        with guidance, fit `memory_budget_frames` (default 64), else bounded).
        window `skip`|`sliding` and weighting `distance`|`uniform` select the paper's ablations.
        keep_luminance: recombine the predicted chroma with the input's own CIELAB L at the input's
        full resolution (default); False yields the raw decoder output at working resolution.
        callback(step, timestep, latents) runs after every denoising step; `resume_latents` =
        (next step, latents after the previous step) continues a saved run.
        keyframes: `{frame: image}` colour keyframes (an RGB array (H, W, 3) uint8 or float in [0, 1], a
        PIL image or a path, any resolution: resized to the working size); any number, anywhere. Each
        keyframe's frame is held at the current noise level during the first
        round(`keyframe_strength` · steps) steps (1.0: all of them, and the frame ends with the
        keyframe's colours; 0: keyframes are ignored). `keyframe_luminance`: `video` (default) encodes
        the keyframe's CIELAB (a, b) with the video frame's own L, `keyframe` the keyframe as it is.
        `keyframe_hold`: `noised` (default) holds a keyframe at the step's noise level; `clean` shows
        it clean at timestep 0 while held (not in L-C4: what a model trained with a cleaner context
        frame reads; `lc4.sampling.HeldFrames`). Needs a scheduler with `add_noise`.
        noise_correlation ρ in [0, 1]: the initial noise of every frame is sqrt(ρ)·(one draw shared by
        the whole video) + sqrt(1 − ρ)·(its own draw) (`lc4.sampling.initial_noise`); 0 (default) is
        the paper's i.i.d. noise. Higher ρ keeps colours the sentence leaves open the same across
        frames and clips (docs/results.md).
        temporal_guidance s_T: None (default) is the paper's classifier-free guidance, both branches through
        the temporal layers; a number >= 0 guides the sentence with the temporal layers off and adds s_T times
        what they change in the conditional branch (`lc4.sampling.temporally_guided`). The two branches with
        the temporal layers off run once per frame, whatever the layout (a frame's ε̂ is then the same in
        every clip), and the coupled conditional branch through the layout: per step T frames more than
        classifier-free guidance clip by clip, and fewer evaluations than it with skip windows of 3
        intervals or more; at s_T = 0 only the frame-independent branches run (the model with its
        temporal layers removed).
        temporal_gate: a width w > 0 weights that term per pixel by 1 / (1 + (r / w)^4), r the size of
        the sentence's own term there (`lc4.sampling.sentence_gate`): the coupling acts on the colours
        the sentence leaves open and not against those it names (not in L-C4; needs temporal_guidance
        and guidance_scale != 1). None (default): no gate.
        Bad options raise `ValueError` before any frame is decoded.
        """
        model, device = self.model, self.device
        resolution = model.config.resolution if resolution is None else resolution  # 256 for SD1.5
        _check_options(fusion=fusion, window=window, weighting=weighting, resolution=resolution,
                       factor=model.vae_scale_factor, steps=num_inference_steps, guidance_scale=guidance_scale,
                       clips_per_chunk=clips_per_chunk, vae_chunk_size=vae_chunk_size,
                       memory_budget_frames=memory_budget_frames, max_interval=max_interval)
        check_keyframe_options(keyframe_strength, keyframe_luminance, hold=keyframe_hold)
        check_noise_correlation(noise_correlation)
        check_temporal_guidance(temporal_guidance)
        check_temporal_gate(temporal_gate, temporal_guidance, guidance_scale)
        specs = keyframe_specs(keyframes)
        held_steps = hold_steps(float(keyframe_strength), num_inference_steps) if specs else 0
        if held_steps:
            check_add_noise(self.scheduler)
        key_images = load_keyframes(specs)  # unreadable images fail before any frame is decoded
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        source = FrameSource(video)
        n_frames = model.config.num_frames
        try:  # fail on a bad prompt before decoding anything...
            schedule: PromptSchedule | None = parse_prompt_schedule(prompt, source.num_frames)
        except ValueError:
            if source.path is None:  # ...unless a file's header count may be wrong: decode first
                raise
            schedule = None
        name = f"{source.path.name}" if source.path is not None else "the video"
        try:
            check_indices(specs, source.num_frames, name)
        except ValueError:
            if source.path is None:
                raise
        size = fit_size(source.height, source.width, resolution, multiple=model.vae_scale_factor)

        grey = self._working_grey(source, size, vae_chunk_size)  # (T, h, w) uint8
        t_frames = grey.shape[0]  # the decoded count, authoritative
        if schedule is None or schedule.num_frames != t_frames:
            schedule = parse_prompt_schedule(prompt, t_frames)
        check_indices(specs, t_frames, name)
        mode = "none" if fusion == "none" else window
        layout = ccf.make_layout(t_frames, n_frames, mode=mode, weighting=weighting,
                                 max_interval=max_interval if mode == "skip" else None)
        # with the temporal layers off a frame's ε̂ is the same in every clip that holds it: one evaluation each
        frame_layout = layout if mode == "none" else ccf.make_layout(t_frames, n_frames, mode="none")
        branches = 1 if guidance_scale == 1.0 else 2
        exact = self._use_exact(fusion, layout, branches, memory_budget_frames)
        # per-frame state: on the model's device for exact mode (one batch anyway), in host memory for
        # bounded/none, so the accelerator's memory does not grow with the video's length
        state = device if exact else torch.device("cpu")
        cond = self._conditioning(grey, schedule, negative_prompt, guidance_scale, vae_chunk_size, state)
        known = None
        if held_steps:  # clean latents of the keyframes, encoded with the video's own grey at hand
            known = keyframe_latents(model, key_images, grey, keyframe_luminance, vae_chunk_size,
                                     labels={s.index: s.label for s in specs})
        del grey, key_images  # not kept through the loop: decoding recomputes it chunk by chunk
        if progress:
            how = "no CCF (clip by clip)" if mode == "none" else \
                f"{mode} window, {weighting} weights, {'exact' if exact else 'bounded'} fusion"
            log.info("CCF: %s; %d clips, %d frame evaluations per step%s", how, layout.n_clips,
                     layout.frame_evaluations, " (x2 for guidance)" if cond.branches == 2 else "")

        self.scheduler.set_timesteps(num_inference_steps, device=state)
        lat_shape = (t_frames, model.vae.config.latent_channels, size[0] // model.vae_scale_factor,
                     size[1] // model.vae_scale_factor)
        latents = initial_noise(lat_shape, generator, float(noise_correlation)).to(state)
        latents = latents * self.scheduler.init_noise_sigma
        held = None
        if known is not None:  # one noise draw per held frame, after the initial latents
            indices, clean = known
            noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32, device=generator.device)
            held = HeldFrames(indices.to(state), clean.to(state), noise.to(state), held_steps,
                              clean_input=keyframe_hold == "clean")
            if progress:
                log.info("keyframes: %d frame(s) held %s during %d of %d steps", len(indices),
                         "clean" if held.clean_input else "at the step's noise level", held_steps,
                         num_inference_steps)
        start = 0
        if resume_latents is not None:
            start, saved = resume_latents
            if tuple(saved.shape) != lat_shape:
                raise ValueError(f"saved latents have shape {tuple(saved.shape)}, this run needs {lat_shape}: "
                                 "they belong to another video or resolution")
            latents = saved.to(state, torch.float32)

        def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if temporal_guidance is None:
                eps = fused_noise_prediction(model, x, t, cond, layout, exact=exact, max_clips=clips_per_chunk)
                return guided(eps, guidance_scale)
            with model.unet.frames_independent():
                independent = fused_noise_prediction(model, x, t, cond, frame_layout, exact=exact,
                                                     max_clips=clips_per_chunk)
            if temporal_guidance == 0:  # the frames independent: no coupled pass needed
                return guided(independent, guidance_scale)
            coupled = fused_noise_prediction(model, x, t, cond.conditional(), layout, exact=exact,
                                             max_clips=clips_per_chunk)
            return temporally_guided(coupled, independent, guidance_scale, float(temporal_guidance), temporal_gate)

        latents = sample_latents(denoise, latents, self.scheduler, generator=generator, callback=callback,
                                 progress=progress, start_step=start, held=held)
        yield from self._decode(latents, source, size, keep_luminance, vae_chunk_size)

    # ------------------------------------------------------------------ helpers
    def _working_grey(self, source: FrameSource, size: tuple[int, int], chunk: int) -> torch.Tensor:
        """Lab-L grey frames at working size, uint8 (T, h, w); says so when colour input is converted."""
        out, warned = [], False
        for frames in source.chunks(max(chunk, 16)):
            if not warned and not is_grey(frames):
                log.warning("input has colour: converted to grey (CIELAB L) before colorizing")
                warned = True
            out.append(working_grey(frames, size))
        grey = torch.cat(out)
        if grey.shape[0] != source.num_frames:  # containers whose header count is off
            log.warning("the container says %d frames but %d were decoded: using %d",
                        source.num_frames, grey.shape[0], grey.shape[0])
            source.num_frames = grey.shape[0]
        return grey

    def _model_grey(self, grey: torch.Tensor) -> torch.Tensor:
        """uint8 (n, h, w) → (n, 3, h, w) in [-1, 1] on the model's device."""
        x = grey.to(self.device).float()[:, None].expand(-1, 3, -1, -1) / 127.5 - 1
        return x.to(self.model.lum_encoder.dtype)

    def _conditioning(self, grey: torch.Tensor, schedule: PromptSchedule, negative_prompt: str,
                      guidance_scale: float, chunk: int, state: torch.device) -> VideoConditioning:
        """Text per (branch, prompt) on the model's device; E^lum's UNet input per frame on `state`."""
        model, n_frames = self.model, self.model.config.num_frames
        if schedule.num_frames != grey.shape[0]:
            raise ValueError(f"prompt schedule covers {schedule.num_frames} frames, the video has {grey.shape[0]}")
        moments = torch.cat([model.unet_lum_input(model.encode_luminance(self._model_grey(grey[s : s + chunk])))
                             .to(state) for s in range(0, grey.shape[0], chunk)])
        # CMPF's visual prompt for each prompt: up to N^f frames spread over the frames it covers
        picks = prompt_frames(schedule, n_frames)
        lum_prompts = [model.encode_luminance(self._model_grey(grey[idx])) for idx in picks]
        for text in dict.fromkeys([*schedule.prompts, negative_prompt]):
            cut = truncated_words(model.tokenizer, text)
            if cut:
                log.warning("prompt longer than %d CLIP tokens; cut words: '%s'", model.tokenizer.model_max_length, cut)
        branches = [list(schedule.prompts)]
        if guidance_scale != 1.0:
            branches.insert(0, [negative_prompt] * len(schedule.prompts))
        texts = []
        for prompts in branches:
            text = model.encode_prompt(prompts)
            per_prompt = []
            for i in range(len(prompts)):
                one = text.select(i, i + 1)
                per_prompt.append(model.fuse_text(one, lum_prompts[i], len(picks[i])))
            texts.append(torch.cat(per_prompt))
        return VideoConditioning(torch.stack(texts), schedule.frame_prompt.to(state), moments)

    @staticmethod
    def _use_exact(fusion: str, layout: ccf.ClipLayout, branches: int, budget: int | None) -> bool:
        """Whether every clip runs in one UNet batch with feature fusion (see `colorize_chunks`)."""
        if fusion == "exact":
            return True
        if fusion in ("bounded", "none"):  # none: clips are independent, so chunk them like bounded
            return False
        budget = budget if budget is not None else DEFAULT_MEMORY_BUDGET_FRAMES
        return layout.frame_evaluations * branches <= budget

    def _decode(self, latents: torch.Tensor, source: FrameSource, size: tuple[int, int], keep_luminance: bool,
                chunk: int) -> Iterator[np.ndarray]:
        """Decode `chunk` frames at a time; the source is re-read alongside (grey for E^lum, L for output)."""
        sources = rechunk(source.chunks(chunk), chunk)
        for start in range(0, latents.shape[0], chunk):
            sl = slice(start, start + chunk)
            full = next(sources, None)
            if full is None or len(full) != len(latents[sl]):
                raise ValueError(f"the input gave fewer frames when re-read for decoding than the "
                                 f"{latents.shape[0]} read at first (changed or unreliable file?)")
            rgb = self._decode_chunk(latents[sl].to(self.device), working_grey(full, size))
            pred = ((rgb.float().clamp(-1, 1) + 1) / 2).cpu()
            if keep_luminance:
                yield recombine_luminance(pred, full)
            else:
                yield (rearrange(pred, "n c h w -> n h w c").numpy() * 255).round().astype(np.uint8)

    def _decode_chunk(self, latents: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        model = self.model
        lum = model.encode_luminance(self._model_grey(grey))
        rgb = model.decode(latents, lum)
        if not torch.isfinite(rgb).all():
            if model.vae.dtype == torch.float32:
                raise FloatingPointError("VAE decoding produced NaN/Inf in float32: the model weights are broken")
            log.warning("VAE decoding in %s gave NaN/Inf: falling back to float32 for the VAE", model.vae.dtype)
            model.vae.to(torch.float32)
            model.lum_encoder.to(torch.float32)
            lum = model.encode_luminance(self._model_grey(grey))
            rgb = model.decode(latents.float(), lum)
        return rgb


def working_grey(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Lab-L grey of uint8 RGB frames (n, H, W, 3), resized to `size` (antialiased), as uint8 (n, h, w).

    Frame by frame independent, so any chunking of a video gives the same grey frames.
    """
    g = torch.from_numpy(np.ascontiguousarray(to_grey(frames)[..., 0])).float()[:, None] / 255.0
    return (resize(g, size).clamp(0, 1) * 255).round().to(torch.uint8)[:, 0]


def prompt_frames(schedule: PromptSchedule, count: int) -> list[torch.Tensor]:
    """For each prompt of `schedule`, up to `count` frame indices spread evenly over the frames it covers."""
    picks = []
    for p in range(len(schedule.prompts)):
        frames = (schedule.frame_prompt == p).nonzero().flatten()
        spread = torch.linspace(0, len(frames) - 1, min(count, len(frames))).round().long()
        picks.append(frames[spread])
    return picks


def _check_options(*, fusion: str, window: str, weighting: str, resolution: int, factor: int, steps: int,
                   guidance_scale: float, clips_per_chunk: int, vae_chunk_size: int,
                   memory_budget_frames: int | None, max_interval: int | None) -> None:
    """Every option limit, checked before any work, each with one message naming limit and value."""
    for name, value, choices in (("fusion", fusion, FUSION_MODES), ("window", window, WINDOWS),
                                 ("weighting", weighting, WEIGHTINGS)):
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    ints = {"resolution": resolution, "num_inference_steps": steps, "clips_per_chunk": clips_per_chunk,
            "vae_chunk_size": vae_chunk_size}
    if memory_budget_frames is not None:
        ints["memory_budget_frames"] = memory_budget_frames
    if max_interval is not None:
        ints["max_interval"] = max_interval
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if resolution % factor:
        raise ValueError(f"resolution must be a multiple of {factor}, got {resolution}")
    if not np.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")


def rechunk(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup an iterator of frame chunks into chunks of exactly `size` frames (the last may be short)."""
    buffer: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        buffer.append(chunk)
        have += len(chunk)
        while have >= size:
            joined = np.concatenate(buffer)
            yield joined[:size]
            buffer, have = [joined[size:]], have - size
    if have:
        yield np.concatenate(buffer)
