"""`lc4 colorize`: colorize a video, a frame folder or an image from a sentence (also `python infer.py`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("lc4")

DEMO_MODEL = Path(__file__).resolve().parent / "assets" / "demo-model"
DEFAULT_MODEL = "demo"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `lc4 colorize` (shared with infer.py)."""
    d = argparse.ArgumentDefaultsHelpFormatter
    p.formatter_class = d
    p.add_argument("input", help="video file (anything FFmpeg reads), folder of frames (DAVIS layout ok), or image; "
                   "with --prompts: a folder of such videos (batch mode)")
    p.add_argument("--prompt", action="append", default=None,
                   help="the description, e.g. 'a girl in a red coat'; repeat as 'START-END: text' for time ranges "
                   "(inclusive frame numbers, END may be open: '121-: ...')")
    p.add_argument("--prompts", default=None, help="batch mode: JSON or CSV mapping video name -> prompt")
    p.add_argument("--output", "-o", required=True,
                   help="output .mp4 (H.264, source fps and audio kept), or a folder for PNG frames; batch: a folder")
    p.add_argument("--format", choices=["auto", "mp4", "png", "both"], default="auto",
                   help="auto: mp4 when --output ends in .mp4, else PNG frames")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="L-C4 folder or hub id; an SD1.5 diffusers folder or single-file checkpoint (untrained L-C4 "
                   "around it); 'demo' = the shipped demo model; 'random-tiny' = random weights")
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=4.5, help="classifier-free guidance scale (1 = off)")
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
    p.add_argument("--clips-per-chunk", type=int, default=4, help="bounded mode: clips per UNet batch")
    p.add_argument("--memory-budget-frames", type=int, default=64,
                   help="auto fusion: exact while all clip frame-evaluations per step fit this many frames")
    p.add_argument("--raw", action="store_true",
                   help="write the decoder output at working resolution instead of recombining the chroma with the "
                   "input's own luminance at full resolution")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="compute precision")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--attention", choices=["auto", "sdpa", "xformers"], default="auto", help="attention kernel")
    p.add_argument("--vae-chunk", type=int, default=8, help="frames per VAE encode/decode batch")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (0-51, lower is better)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--truncate-prompt", action="store_true", help="accept prompts longer than 77 CLIP tokens (cut)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of .ckpt files (only for files you trust)")
    p.add_argument("--no-resume", action="store_true", help="ignore a saved partial run of the same job")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_arguments(subparsers.add_parser("colorize", help="colorize a grey video from a sentence"))


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
    return pipe.to(dev, dtype)


def _check_prompts(pipe, prompts: list[str], allow_truncation: bool) -> None:
    from .prompts import truncated_words

    for text in prompts:
        text = text.split(":", 1)[1] if ":" in text and text.split(":", 1)[0].replace("-", "").strip().isdigit() else text
        cut = truncated_words(pipe.model.tokenizer, text.strip())
        if cut:
            msg = f"prompt longer than {pipe.model.tokenizer.model_max_length} CLIP tokens; cut words: '{cut}'"
            if not allow_truncation:
                raise ValueError(msg + " (shorten it or pass --truncate-prompt)")
            log.warning(msg)


def _job_key(args: argparse.Namespace, input_path: Path, prompts: list[str]) -> str:
    keys = ["model", "steps", "guidance", "negative_prompt", "seed", "resolution", "scheduler", "fusion", "window",
            "weighting", "max_interval", "dtype"]
    payload = {k: getattr(args, k) for k in keys} | {"input": str(input_path.resolve()), "prompts": prompts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def colorize_one(pipe, input_path: Path, prompts: list[str], output: Path, args: argparse.Namespace) -> Path:
    """Colorize one input to `output` (mp4 and/or png folder), resumable per denoising step."""
    from .io import VideoWriter, check_output_path, probe, write_png_folder

    fmt = args.format if args.format != "auto" else ("mp4" if output.suffix.lower() == ".mp4" else "png")
    mp4 = output if output.suffix.lower() == ".mp4" else output.with_suffix(".mp4")
    png = output.with_suffix("") if output.suffix.lower() == ".mp4" else output
    targets = ([mp4] if fmt in ("mp4", "both") else []) + ([png] if fmt in ("png", "both") else [])
    for t in targets:
        check_output_path(t, overwrite=args.overwrite, inputs=[input_path])
    info = probe(input_path)
    _check_prompts(pipe, prompts, args.truncate_prompt)

    state_file = targets[0].with_name(f".{targets[0].name}.lc4-resume.pt")
    key = _job_key(args, input_path, prompts)
    resume = None
    if state_file.exists() and not args.no_resume:
        saved = torch.load(state_file, weights_only=True)
        if saved.get("key") == key:
            resume = (int(saved["step"]) + 1, saved["latents"])
            log.warning("resuming a saved run at step %d/%d", resume[0], args.steps)

    def save_state(step: int, _t: Any, latents: torch.Tensor) -> None:
        tmp = state_file.with_suffix(".tmp")
        torch.save({"key": key, "step": step, "latents": latents.cpu()}, tmp)
        tmp.replace(state_file)

    kwargs = dict(
        negative_prompt=args.negative_prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
        seed=args.seed, resolution=args.resolution or pipe.model.config.resolution, fusion=args.fusion,
        window=args.window, weighting=args.weighting, max_interval=args.max_interval,
        clips_per_chunk=args.clips_per_chunk, memory_budget_frames=args.memory_budget_frames,
        keep_luminance=not args.raw, vae_chunk_size=args.vae_chunk, progress=not args.quiet,
        callback=save_state if info.num_frames > 1 else None, resume_latents=resume,
    )
    chunks = pipe.colorize_chunks(str(input_path), prompts if len(prompts) > 1 else prompts[0], **kwargs)
    if fmt == "png":
        write_png_folder(chunks, png, overwrite=args.overwrite, inputs=[input_path])
    else:
        audio = input_path if info.has_audio else None
        with VideoWriter(mp4, info.frame_rate, crf=args.crf, audio_from=audio, overwrite=args.overwrite,
                         inputs=[input_path]) as writer:
            frames = []
            for chunk in chunks:
                writer.write(chunk)
                if fmt == "both":
                    frames.append(chunk)
        if fmt == "both":
            import numpy as np

            write_png_folder(np.concatenate(frames), png, overwrite=args.overwrite, inputs=[input_path])
    state_file.unlink(missing_ok=True)
    return targets[0]


def run(args: argparse.Namespace) -> int:
    from .models.attention import describe_backend, set_attention_backend

    set_attention_backend(args.attention)
    input_path = Path(args.input)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    if args.prompts is None and not args.prompt:
        raise ValueError("give --prompt TEXT (or --prompts FILE for a folder of videos)")
    pipe = load_pipeline(args.model, args.device, args.dtype, args.scheduler, args.trust_checkpoint)
    if not args.quiet:
        log.info("%s; device %s, dtype %s", describe_backend(pipe.device), pipe.device, args.dtype)
    if args.prompts is None:
        out = colorize_one(pipe, input_path, args.prompt, Path(args.output), args)
        print(f"wrote {out}")
        return 0
    from .evaluation.prompts import load_prompts

    table = load_prompts(args.prompts)
    if not input_path.is_dir():
        raise ValueError("with --prompts, INPUT must be a folder of videos")
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    for name, prompt in sorted(table.items()):
        candidates = [p for p in input_path.iterdir() if p.stem == name or p.name == name]
        if not candidates:
            log.warning("%s: no video or frame folder named so in %s, skipped", name, input_path)
            continue
        target = out_dir / (f"{name}.mp4" if args.format in ("auto", "mp4", "both") else name)
        if target.exists() and not args.overwrite:
            log.warning("%s: output exists, skipped (use --overwrite to redo)", name)
            continue
        colorize_one(pipe, candidates[0], [prompt], target, args)
        done += 1
        print(f"[{done}/{len(table)}] wrote {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python infer.py ...` = `lc4 colorize ...`."""
    from .cli import main as lc4_main

    return lc4_main(["colorize", *(sys.argv[1:] if argv is None else argv)])
