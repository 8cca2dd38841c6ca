"""`lc4 colorize`: colorize a video, a frame folder or an image from a sentence (also `python infer.py`).

Everything a user can get wrong (paths, options, prompts, outputs) is checked before the model is
loaded, so a typo costs a second, not a model load; errors are `ValueError`/`FileNotFoundError`
with one line that `lc4.cli` prints. A run saves its latents after every denoising step beside
the output and continues from there when the same job is started again (see docs/inference.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

log = logging.getLogger("lc4")

DEMO_MODEL = Path(__file__).resolve().parent / "assets" / "demo-model"
DEFAULT_MODEL = "demo"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")  # H.264 in MP4, Matroska, QuickTime (lc4.io.VIDEO_CONTAINERS)
DEMO_WARNING = ("the demo model was trained only on procedural shapes and colours real films poorly; "
                "for real footage pass --model path/to/sd15-or-lc4")
LATENT_MULTIPLE = 8  # every SD-family VAE downsamples by 8


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `lc4 colorize` (shared with infer.py)."""
    d = argparse.ArgumentDefaultsHelpFormatter
    p.formatter_class = d
    p.add_argument("input", help="video file (anything FFmpeg reads), folder of frames (DAVIS layout ok), or image; "
                   "with --prompts: a folder of such videos (batch mode)")
    p.add_argument("--prompt", action="append", default=None,
                   help="the description, e.g. 'a girl in a red coat'; repeat as 'START-END: text' for time ranges "
                   "(inclusive frame numbers, END may be open: '121-: ...')")
    p.add_argument("--prompts", default=None,
                   help="batch mode: JSON or CSV mapping video name -> prompt; a JSON entry may be an object "
                   "{\"prompt\": TEXT or [ranged prompts], \"keyframes\": {\"FRAME\": \"image.png\"}} "
                   "(keyframe paths relative to the table's folder)")
    p.add_argument("--keyframe", action="append", default=None, metavar="FRAME:IMAGE",
                   help="a colour keyframe: the image (any resolution, resized like the video) gives frame FRAME "
                   "(numbered from 0) its colours, which TDA and CCF carry to the frames around it; repeat for more")
    p.add_argument("--keyframe-strength", type=float, default=1.0,
                   help="fraction of the denoising steps during which keyframes are held (1: all; the keyframe's "
                   "frame then comes out with its colours)")
    p.add_argument("--keyframe-luminance", choices=["video", "keyframe"], default="video",
                   help="video: encode each keyframe's colours (CIELAB a, b) with the video frame's own L, so a "
                   "reference from another print fits; keyframe: encode the keyframe as it is")
    p.add_argument("--keyframe-hold", choices=["noised", "clean"], default="noised",
                   help="noised: hold a keyframe at each step's noise level (replacement conditioning); clean: show "
                   "it clean, at timestep 0, while held (for models trained with a cleaner context frame)")
    p.add_argument("--output", "-o", required=True,
                   help="output video .mp4/.mkv/.mov (H.264, source frame timing and audio kept), a folder for PNG "
                   "frames (no suffix, or ending in /), or an image file (.png/.jpg) for a single-image input; "
                   "batch: a folder")
    p.add_argument("--format", choices=["auto", "mp4", "png", "both"], default="auto",
                   help="auto: a video when --output ends in .mp4/.mkv/.mov, one image when it ends in an image "
                   "suffix, PNG frames when it has no suffix or ends in /, any other suffix is refused; mp4: a video "
                   "(OUT.mp4 unless OUT ends in .mkv/.mov); png: PNG frames in the folder OUT; both: the video and "
                   "the folder OUT/")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="L-C4 folder or hub id; an SD1.5 diffusers folder or single-file checkpoint (untrained L-C4 "
                   "around it); 'demo' = the shipped demo model; 'random-tiny' = random weights")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=4.5, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--noise-correlation", type=float, default=0.0,
                   help="0..1: share this much of the initial noise between all frames (0: independent frames, "
                   "as in the paper); higher keeps colours the prompt leaves open the same over the film")
    p.add_argument("--temporal-guidance", type=float, default=None, metavar="S_T",
                   help="guide the sentence with the temporal layers off and scale what they add by S_T (0: frames "
                   "independent, 1: as trained; one pass per frame more per step); default: classifier-free guidance "
                   "through the temporal layers, as in L-C4")
    p.add_argument("--temporal-gate", type=float, default=None, metavar="WIDTH",
                   help="with --temporal-guidance: weight its term per pixel by how little the prompt says there "
                   "(1 / (1 + (r / WIDTH)^4)), so the frames' coupling keeps colours the prompt leaves open and "
                   "leaves the named ones alone; default: no gate")
    p.add_argument("--negative-prompt", default="", help="text of the unconditional branch")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed = same colours)")
    p.add_argument("--resolution", type=int, default=None,
                   help="working resolution of the short side (multiple of 8); default: the model's (256 for SD1.5)")
    p.add_argument("--scheduler", default="DDIMScheduler", help="any diffusers scheduler class name")
    p.add_argument("--fusion", choices=["auto", "exact", "bounded", "none"], default="auto",
                   help="Cross-Clip Fusion: exact (paper), bounded (memory independent of length), none (clip by clip)")
    p.add_argument("--window", choices=["skip", "sliding"], default="skip", help="CCF clip layout")
    p.add_argument("--weighting", choices=["distance", "uniform"], default="distance", help="CCF fusion weights")
    p.add_argument("--max-interval", type=int, default=None, help="cap on the skip-window interval D")
    p.add_argument("--clips-per-chunk", type=int, default=4, help="bounded/none modes: clips per UNet batch")
    p.add_argument("--memory-budget-frames", type=int, default=64,
                   help="auto fusion: exact while all clip frame-evaluations per step (x2 with guidance) fit this")
    p.add_argument("--raw", action="store_true",
                   help="write the decoder output at working resolution instead of recombining the chroma with the "
                   "input's own luminance at full resolution")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="compute precision")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--attention", choices=["auto", "sdpa", "xformers"], default="auto", help="attention kernel")
    p.add_argument("--vae-chunk", type=int, default=8, help="frames per VAE encode/decode batch")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (0-51, lower is better)")
    p.add_argument("--pixel-format", choices=["yuv420p", "yuv444p"], default="yuv420p",
                   help="MP4 chroma sampling: yuv420p plays everywhere; yuv444p keeps full-resolution colour "
                   "(archival; 4:2:0 halves the chroma and lets sharp colour edges leak into the luminance)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output that lc4 wrote (a video file, or a folder holding only lc4's "
                   "PNG frames); never an input, a folder holding an input or other files, or the working folder")
    p.add_argument("--truncate-prompt", action="store_true", help="accept prompts longer than 77 CLIP tokens (cut)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of .ckpt files (only for files you trust)")
    p.add_argument("--no-resume", action="store_true", help="ignore a saved partial run of the same job")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_arguments(subparsers.add_parser("colorize", help="colorize a grey video from a sentence"))


# --------------------------------------------------------------------------- up-front checks


def check_options(args: argparse.Namespace) -> None:
    """Numeric option limits and the scheduler name, before anything is loaded."""
    positive = {"--steps": args.steps, "--clips-per-chunk": args.clips_per_chunk,
                "--memory-budget-frames": args.memory_budget_frames, "--vae-chunk": args.vae_chunk}
    if args.max_interval is not None:
        positive["--max-interval"] = args.max_interval
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.resolution is not None and (args.resolution < LATENT_MULTIPLE or args.resolution % LATENT_MULTIPLE):
        raise ValueError(f"--resolution must be a positive multiple of {LATENT_MULTIPLE}, got {args.resolution}")
    if not 0 <= args.crf <= 51:
        raise ValueError(f"--crf must be in 0..51, got {args.crf}")
    if not np.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number, got {args.guidance}")
    if args.guidance < 0:
        raise ValueError(f"--guidance must be >= 0 (1 turns guidance off; 4.5 is the default), got {args.guidance}")
    from .keyframes import check_keyframe_options
    from .sampling import check_noise_correlation, check_temporal_gate, check_temporal_guidance

    check_noise_correlation(getattr(args, "noise_correlation", 0.0), "--noise-correlation")
    check_temporal_guidance(getattr(args, "temporal_guidance", None), "--temporal-guidance")
    check_temporal_gate(getattr(args, "temporal_gate", None), getattr(args, "temporal_guidance", None), args.guidance,
                        ("--temporal-gate", "--temporal-guidance", "--guidance"))

    check_keyframe_options(getattr(args, "keyframe_strength", 1.0), getattr(args, "keyframe_luminance", "video"),
                           "--keyframe-strength", "--keyframe-luminance", getattr(args, "keyframe_hold", "noised"),
                           "--keyframe-hold")
    import diffusers

    if not args.scheduler.endswith("Scheduler") or getattr(diffusers, args.scheduler, None) is None:
        raise ValueError(f"unknown scheduler {args.scheduler!r}: use a diffusers scheduler class name such as "
                         "DDIMScheduler or DPMSolverMultistepScheduler")


def check_keyframe_scheduler(args: argparse.Namespace, jobs: list["Job"]) -> None:
    """Keyframes need a scheduler with `add_noise` (the forward process): refused before the model loads."""
    from .keyframes import hold_steps

    if not any(job.keyframes for job in jobs) or not hold_steps(getattr(args, "keyframe_strength", 1.0), args.steps):
        return
    import diffusers

    if not callable(getattr(getattr(diffusers, args.scheduler), "add_noise", None)):
        raise ValueError(f"--keyframe needs a scheduler with add_noise, and {args.scheduler} has none: use "
                         "DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler or EulerDiscreteScheduler")


@dataclass
class Job:
    """One input, its prompt entries and where its outputs go (validated, nothing computed yet)."""

    input: Path
    prompts: list[str]
    output: Path
    fmt: str  # mp4 | png | both | image
    num_frames: int
    frame_rate: Any
    has_audio: bool
    sample_aspect_ratio: Any = 1
    timestamps: Any = None  # lc4.io.FrameTimes of a variable-frame-rate input, else None
    keyframes: list = field(default_factory=list)  # lc4.keyframes.KeyframeSpec (paths), checked, by frame

    @property
    def sources(self) -> list[Path]:
        """What this job reads, which no output may replace: the input and the keyframe images."""
        return [self.input, *(Path(spec.image) for spec in self.keyframes)]

    @property
    def video(self) -> Path:
        """The video output: --output itself when it ends in .mp4/.mkv/.mov, else OUT.mp4."""
        return self.output if self.output.suffix.lower() in VIDEO_SUFFIXES else self.output.with_suffix(".mp4")

    @property
    def mp4(self) -> Path:  # the earlier name of `video`
        return self.video

    @property
    def png(self) -> Path:
        return self.output.with_suffix("") if self.output.suffix.lower() in VIDEO_SUFFIXES else self.output

    @property
    def targets(self) -> list[Path]:
        if self.fmt == "image":
            return [self.output]
        return ([self.video] if self.fmt in ("mp4", "both") else []) + ([self.png] if self.fmt in ("png", "both") else [])

    @property
    def state_file(self) -> Path:
        first = self.targets[0]
        return first.with_name(f".{first.name}.lc4-resume.pt")


def output_format(requested: str, output: Path, folder: bool = False) -> str:
    """mp4 (a video file) | png | both | image, from --format and the output's suffix.

    ``folder``: the user marked the output as a folder (a trailing slash). A suffix that names no
    output lc4 writes is refused, never silently turned into a folder of PNG frames.
    """
    from .io import UNSUPPORTED_VIDEO_SUFFIXES

    suffix = output.suffix.lower()
    if requested == "png":
        return "png"
    writable = "write .mp4, .mkv or .mov (H.264) and convert it with ffmpeg if you need another format"
    if suffix in UNSUPPORTED_VIDEO_SUFFIXES and not folder:
        raise ValueError(f"--output {output}: lc4 cannot write {suffix} video; {writable}")
    if requested != "auto":
        return requested
    if suffix in VIDEO_SUFFIXES:
        return "mp4"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if not suffix or folder or output.is_dir():
        return "png"
    raise ValueError(f"--output {output}: unknown suffix {suffix!r}; give a video (.mp4, .mkv, .mov), an image "
                     "(.png, .jpg) for a single frame, or a folder for PNG frames (no suffix, a trailing /, or "
                     "--format png)")


def plan_job(input_path: Path, prompts: list[str], output: Path, args: argparse.Namespace,
             inputs: Iterable[Path] = (), keyframes: Iterable[Any] = ()) -> Job:
    """Probe the input, parse the prompt schedule, check the keyframes and the outputs; raises on anything wrong.

    ``inputs``: further paths no output may be or hold (batch mode: every source of the batch).
    ``keyframes``: `lc4.keyframes.KeyframeSpec`s with image paths; their frame numbers are checked
    against the input's frame count and every image is read once (an unreadable one is refused).
    """
    from .io import check_output_path, probe
    from .keyframes import check_indices, load_image
    from .prompts import parse_prompt_schedule

    info = probe(input_path)
    parse_prompt_schedule(prompts if len(prompts) > 1 else prompts[0], info.num_frames)
    keyframes = list(keyframes)
    check_indices(keyframes, info.num_frames, input_path.name)
    for spec in keyframes:
        load_image(spec.image, spec.label)
    inputs = [*inputs, *(spec.image for spec in keyframes)]  # no output may replace a keyframe image
    raw = str(getattr(args, "output", ""))
    fmt = output_format(args.format, output, folder=raw.endswith(("/", os.sep)) and Path(raw) == output)
    if fmt == "image" and info.num_frames != 1:
        raise ValueError(f"--output {output} names one image but {input_path} has {info.num_frames} frames: "
                         "give a .mp4 or a folder")
    job = Job(input_path, list(prompts), output, fmt, info.num_frames, info.frame_rate, info.has_audio,
              info.sample_aspect_ratio, keyframes=keyframes)
    for target in job.targets:
        check_output_path(target, overwrite=args.overwrite, inputs=[input_path, *inputs],
                          directory=target == job.png and fmt in ("png", "both"))
    if info.kind == "video" and fmt != "image":  # one pass over the packets, nothing decoded
        job.timestamps = variable_timestamps(input_path, info.frame_rate)
        if job.timestamps is not None and fmt == "png":
            log.warning("%s has a variable frame rate; PNG frames carry no timing, so it is lost (write .mp4, .mkv "
                        "or .mov to keep the source's timestamps)", input_path.name)
    return job


def variable_timestamps(path: Path, rate: Any):
    """The frame timestamps of a variable-frame-rate video (to keep them in the output), else None."""
    from .io import frame_times

    times = frame_times(path)
    return times if times is not None and times.is_variable(rate) else None


def load_pipeline(model: str, device: str, dtype: str, scheduler: str, trust_checkpoint: bool = False):
    """Resolve --model into a pipeline (see the option's help)."""
    from .models.config import LC4Config
    from .pipeline import LC4Pipeline

    if model == "demo":
        if DEMO_MODEL.is_dir():
            model = str(DEMO_MODEL)
        else:
            log.warning("no demo weights are installed: using random tiny weights (colours are meaningless)")
            model = "random-tiny"
    path = Path(model).expanduser()
    if model == "random-tiny":
        pipe = LC4Pipeline.from_config(LC4Config.tiny(), seed=0)
    elif path.is_file() and path.suffix in (".safetensors", ".ckpt", ".pt", ".bin", ".pth"):
        log.warning("building an untrained L-C4 around the SD1.5 checkpoint %s: it colorizes like plain SD1.5", path)
        pipe = LC4Pipeline.from_single_file(path, trust_pickle=trust_checkpoint)
    elif path.is_dir() and (path / "unet").is_dir() and not (path / "lc4_config.json").exists():
        log.warning("building an untrained L-C4 around the SD1.5 folder %s", path)
        pipe = LC4Pipeline.from_sd15(path)
    elif path.exists() and not path.is_dir():
        raise ValueError(f"--model {model}: not an L-C4 folder, SD1.5 folder or SD1.5 checkpoint file")
    else:
        pipe = LC4Pipeline.from_pretrained(model)
    pipe.set_scheduler(scheduler)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {dev}: CUDA is not available on this machine")
    pipe = pipe.to(dev, dtype)
    pipe.enable_attention_backend()
    return pipe


def check_prompt_lengths(pipe, prompts: Iterable[str], allow_truncation: bool) -> None:
    """Refuse prompts longer than the CLIP window unless --truncate-prompt is given."""
    from .prompts import prompt_text, truncated_words

    for entry in prompts:
        cut = truncated_words(pipe.model.tokenizer, prompt_text(entry))
        if cut:
            if not allow_truncation:  # with --truncate-prompt the pipeline warns with the same words
                raise ValueError(f"prompt longer than {pipe.model.tokenizer.model_max_length} CLIP tokens; "
                                 f"cut words: '{cut}' (shorten it or pass --truncate-prompt)")


# --------------------------------------------------------------------------- resume state


def job_key(args: argparse.Namespace, job: Job) -> str:
    """Hash of everything that defines a run's latents: a saved state is reused only for the same key.

    Memory knobs (--clips-per-chunk, --memory-budget-frames, --vae-chunk, --device) are left
    out on purpose, so a run that ran out of memory can be resumed with smaller chunks.
    """
    keys = ["model", "steps", "guidance", "negative_prompt", "seed", "resolution", "scheduler", "fusion", "window",
            "weighting", "max_interval", "dtype"]
    stat = job.input.stat()
    payload = {k: getattr(args, k) for k in keys} | {
        "input": str(job.input.resolve()), "input_size": stat.st_size, "input_mtime": stat.st_mtime_ns,
        "prompts": job.prompts,
    }
    if getattr(args, "noise_correlation", 0.0):  # (absent at 0, so earlier saved runs still resume)
        payload["noise_correlation"] = float(args.noise_correlation)
    if getattr(args, "temporal_guidance", None) is not None:  # (absent by default: earlier runs resume)
        payload["temporal_guidance"] = float(args.temporal_guidance)
    if getattr(args, "temporal_gate", None) is not None:
        payload["temporal_gate"] = float(args.temporal_gate)
    if job.keyframes:  # the images by content: a keyframe edited in place is another job
        payload["keyframes"] = [[spec.index, hashlib.sha256(Path(spec.image).read_bytes()).hexdigest()]
                                for spec in job.keyframes]
        payload["keyframe_strength"] = float(getattr(args, "keyframe_strength", 1.0))
        payload["keyframe_luminance"] = getattr(args, "keyframe_luminance", "video")
        if getattr(args, "keyframe_hold", "noised") != "noised":  # (absent by default: earlier runs resume)
            payload["keyframe_hold"] = args.keyframe_hold
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_state(state_file: Path, key: str, steps: int) -> tuple[int, torch.Tensor] | None:
    """(next step, latents) from a saved state of the same job, else None (unreadable files are ignored)."""
    if not state_file.exists():
        return None
    try:
        saved = torch.load(state_file, weights_only=True)
        step, latents = int(saved["step"]), saved["latents"]
        same = saved.get("key") == key and isinstance(latents, torch.Tensor) and 0 <= step < steps
    except Exception as exc:  # a torn or foreign file must not block a fresh run
        log.warning("ignoring the unreadable resume file %s (%s)", state_file, type(exc).__name__)
        return None
    if not same:
        log.warning("ignoring the resume file %s: it belongs to another job", state_file)
        return None
    log.warning("resuming a saved run after step %d/%d (--no-resume starts afresh)", step + 1, steps)
    return step + 1, latents


def state_saver(state_file: Path, key: str):
    """Per-step callback writing (key, step, latents) atomically."""

    def save(step: int, _t: Any, latents: torch.Tensor) -> None:
        tmp = state_file.with_name(state_file.name + ".tmp")
        torch.save({"key": key, "step": step, "latents": latents.detach().cpu()}, tmp)
        tmp.replace(state_file)

    return save


# --------------------------------------------------------------------------- one job


def _tee(chunks: Iterable[np.ndarray], writer) -> Iterator[np.ndarray]:
    """Pass chunks through, writing each to `writer` first (MP4 and PNG from one stream)."""
    for chunk in chunks:
        writer.write(chunk)
        yield chunk


def pipeline_kwargs(pipe, args: argparse.Namespace) -> dict[str, Any]:
    """`colorize_chunks` keyword arguments from the command line."""
    return dict(
        negative_prompt=args.negative_prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
        seed=args.seed, resolution=args.resolution or pipe.model.config.resolution, fusion=args.fusion,
        window=args.window, weighting=args.weighting, max_interval=args.max_interval,
        clips_per_chunk=args.clips_per_chunk, memory_budget_frames=args.memory_budget_frames,
        keep_luminance=not args.raw, vae_chunk_size=args.vae_chunk, progress=not args.quiet,
        keyframe_strength=getattr(args, "keyframe_strength", 1.0),
        keyframe_luminance=getattr(args, "keyframe_luminance", "video"),
        keyframe_hold=getattr(args, "keyframe_hold", "noised"),
        noise_correlation=float(getattr(args, "noise_correlation", 0.0)),
        temporal_guidance=getattr(args, "temporal_guidance", None),
        temporal_gate=getattr(args, "temporal_gate", None),
    )


def colorize_job(pipe, job: Job, args: argparse.Namespace) -> Path:
    """Colorize one planned job to its outputs (video, png folder, both, or one image), resumably.

    Progress (unless --quiet): a bar while the input is decoded, the denoising bar, then a bar
    while the output frames are decoded and written (each appears after a second).
    """
    from .io import io_progress

    with io_progress(not args.quiet) as reading:
        return _colorize_job(pipe, job, args, reading)


def _progress(chunks: Iterable[np.ndarray], total: int, desc: str, enabled: bool) -> Iterator[np.ndarray]:
    """Pass chunks through, counting their frames on a tqdm bar (shown after a second; off with --quiet)."""
    from .io import progress_bar

    bar = None
    try:
        for chunk in chunks:
            if bar is None:  # made with the first frames: no idle bar above the denoising one
                bar = progress_bar(total, desc, force=enabled)
            yield chunk
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def _colorize_job(pipe, job: Job, args: argparse.Namespace, reading) -> Path:
    from PIL import Image

    from .io import VideoWriter, atomic_output, write_png_folder

    check_prompt_lengths(pipe, [*job.prompts, args.negative_prompt], args.truncate_prompt)
    key = job_key(args, job)
    resume = None if args.no_resume else load_state(job.state_file, key, args.steps)
    save = state_saver(job.state_file, key)

    def after_step(step: int, t: Any, latents: torch.Tensor) -> None:
        save(step, t, latents)
        reading.enabled = False  # the input was read; from now on the writing bar counts the frames

    chunks = pipe.colorize_chunks(str(job.input), job.prompts if len(job.prompts) > 1 else job.prompts[0],
                                  callback=after_step, resume_latents=resume, keyframes=job.keyframes or None,
                                  **pipeline_kwargs(pipe, args))
    chunks = _progress(chunks, job.num_frames, f"writing {job.targets[0].name}", not args.quiet)
    if job.fmt == "image":
        frame = np.concatenate(list(chunks))[0]
        with atomic_output(job.output, overwrite=args.overwrite, inputs=job.sources) as tmp:
            Image.fromarray(frame).save(tmp, format=Image.registered_extensions()[job.output.suffix.lower()])
    elif job.fmt == "png":
        write_png_folder(chunks, job.png, overwrite=args.overwrite, inputs=job.sources)
    else:
        audio = job.input if job.has_audio else None
        with VideoWriter(job.video, job.frame_rate, crf=args.crf, pixel_format=args.pixel_format, audio_from=audio,
                         sample_aspect_ratio=job.sample_aspect_ratio, overwrite=args.overwrite,
                         inputs=job.sources, timestamps=job.timestamps) as writer:
            if job.fmt == "both":  # streamed to both outputs: no full-length frame buffer
                write_png_folder(_tee(chunks, writer), job.png, overwrite=args.overwrite, inputs=job.sources)
            else:
                for _ in _tee(chunks, writer):
                    pass
    job.state_file.unlink(missing_ok=True)
    return job.targets[0]


def colorize_one(pipe, input_path: Path, prompts: list[str], output: Path, args: argparse.Namespace) -> Path:
    """Plan and run one job (kept for callers of the earlier API)."""
    return colorize_job(pipe, plan_job(input_path, prompts, output, args), args)


# --------------------------------------------------------------------------- batch


def plan_batch(input_dir: Path, table: dict[str, Any], out_dir: Path, args: argparse.Namespace) -> list[Job]:
    """One job per prompts-table entry that names a video/frame folder in `input_dir` (existing outputs skipped).

    A table value is a prompt, or a `lc4.evaluation.prompts.ColorizeEntry` (prompts and keyframes).
    """
    if not input_dir.is_dir():
        raise ValueError(f"with --prompts, INPUT must be a folder of videos, got {input_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"with --prompts, --output must be a folder, got the file {out_dir}")
    entries = sorted(input_dir.iterdir())
    jobs: list[Job] = []
    found = {name: [p for p in entries if p.name == name] or [p for p in entries if p.stem == name] for name in table}
    missing = [name for name, paths in found.items() if not paths]
    if len(missing) == len(table):
        raise ValueError(f"none of the {len(table)} names in the prompts file is a video or frame folder in {input_dir}")
    for name in missing:
        log.warning("%s: no video or frame folder named so in %s, skipped", name, input_dir)
    # every entry of the input folder is the user's, listed in the table or not: never an output
    entries_by_path = {p.resolve(): p for p in entries}
    for name, entry in sorted(table.items()):
        prompts, keyframes = ([entry], []) if isinstance(entry, str) else (entry.prompts, entry.keyframes)
        if not found[name]:
            continue
        source = found[name][0]
        base = source.stem if source.is_file() else source.name
        target = out_dir / (base if args.format == "png" else f"{base}.mp4")
        if target.exists() and not args.overwrite:
            log.warning("%s: %s exists, skipped (use --overwrite to redo)", name, target)
            continue
        clash = entries_by_path.get(target.resolve())
        if clash is not None:
            raise ValueError(f"{target}: output is the same as the input {clash} (an entry of {input_dir}); "
                             "choose another --output folder")
        jobs.append(plan_job(source, prompts, target, args, inputs=[input_dir], keyframes=keyframes))
    return jobs


# --------------------------------------------------------------------------- entry points


def run(args: argparse.Namespace) -> int:
    from .evaluation.prompts import load_colorize_table
    from .keyframes import parse_keyframe_args
    from .models.attention import describe_backend, set_attention_backend

    set_attention_backend(args.attention)
    input_path = Path(args.input)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if args.prompts is not None and args.prompt:
        raise ValueError("give --prompt for one input or --prompts for a folder of videos, not both")
    if args.prompts is None and not args.prompt:
        raise ValueError("give --prompt TEXT (or --prompts FILE for a folder of videos)")
    if args.prompts is not None and getattr(args, "keyframe", None):
        raise ValueError("--keyframe is for one input; in batch mode give each video its keyframes in the prompts "
                         "JSON: {\"name\": {\"prompt\": \"...\", \"keyframes\": {\"0\": \"ref0.png\"}}}")
    check_options(args)
    if args.prompts is None:
        keyframes = parse_keyframe_args(getattr(args, "keyframe", None))
        jobs = [plan_job(input_path, args.prompt, Path(args.output), args, keyframes=keyframes)]
    else:
        jobs = plan_batch(input_path, load_colorize_table(args.prompts), Path(args.output), args)
    check_keyframe_scheduler(args, jobs)
    if args.prompts is not None:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    if not jobs:
        print("nothing to do: every output exists (use --overwrite to redo)")
        return 0
    if args.model == DEFAULT_MODEL and DEMO_MODEL.is_dir():
        log.warning(DEMO_WARNING)  # once per command, also in batch mode
    pipe = load_pipeline(args.model, args.device, args.dtype, args.scheduler, args.trust_checkpoint)
    if not args.quiet:
        log.info("%s; device %s, dtype %s", describe_backend(pipe.device), pipe.device, args.dtype)
    for i, job in enumerate(jobs, start=1):
        out = colorize_job(pipe, job, args)
        print(f"wrote {out}" if len(jobs) == 1 else f"[{i}/{len(jobs)}] wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python infer.py ...` = `lc4 colorize ...`."""
    from .cli import main as lc4_main

    return lc4_main(["colorize", *(sys.argv[1:] if argv is None else argv)])
