"""Cost of Cross-Clip Fusion per denoising step: UNet frame evaluations and wall time, per mode (issue 3).

For each video length T and each mode (exact, bounded, none) the tiny random model colorizes a
grey video; a hook on the UNet counts the frames it evaluates per step (classifier-free guidance
doubles them) and the per-step callback times the steps. The layout's own count
(`ccf.make_layout(...).frame_evaluations`, per guidance branch) is printed beside the measured one.

    python benchmarks/ccf_cost.py                          # T = 16, 64, 256 at 32 px, 2 steps
    python benchmarks/ccf_cost.py --frames 16 64 --resolution 64 --steps 3 --threads 2
    python benchmarks/ccf_cost.py --window sliding --weighting uniform   # the ablations' layouts

Timings are CPU wall times of a 0.8 M-parameter UNet: they show how cost scales with T and mode,
not what SD1.5 on a GPU takes (there, a step costs about frame evaluations x the per-frame cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bounded_memory import make_pipeline  # noqa: E402  (one tiny pipeline recipe for both benchmarks)

MODES = ("exact", "bounded", "none")


def grey_video(frames: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    g = 128 + 90 * np.sin(2 * np.pi * (xx / size + t / 37.0)) * np.cos(2 * np.pi * yy / size)
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def measure(pipe, frames: int, mode: str, *, resolution: int, steps: int, clips_per_chunk: int, window: str,
            weighting: str, guidance: float) -> dict[str, float]:
    """UNet frames and batches per step, and seconds per step (median over the steps)."""
    from lc4 import ccf

    evaluated: list[int] = []
    hook = pipe.model.unet.register_forward_pre_hook(lambda m, args: evaluated.append(args[0].shape[0]))
    stamps: list[float] = []
    try:
        start = time.perf_counter()
        chunks = pipe.colorize_chunks(
            grey_video(frames, resolution), "a red car on a grey road", num_inference_steps=steps,
            guidance_scale=guidance, resolution=resolution, fusion=mode, window=window, weighting=weighting,
            clips_per_chunk=clips_per_chunk, keep_luminance=False, progress=False,
            callback=lambda i, t, z: stamps.append(time.perf_counter()),
        )
        first = next(chunks)  # runs conditioning + all steps + the first decode chunk
        del first
        for _ in chunks:
            pass
    finally:
        hook.remove()
    # a step's time: from the end of the previous step to its own end (UNet, fusion and scheduler)
    step_times = [b - a for a, b in zip(stamps, stamps[1:])] or [stamps[0] - start]
    layout = ccf.make_layout(frames, pipe.model.config.num_frames, mode="none" if mode == "none" else window,
                             weighting=weighting)
    return {
        "frames": frames, "mode": mode, "clips": layout.n_clips, "layout_evals": layout.frame_evaluations,
        "unet_frames_per_step": sum(evaluated) / steps, "batches_per_step": len(evaluated) / steps,
        "seconds_per_step": statistics.median(step_times),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--resolution", type=int, default=32, help="working resolution (short side, multiple of 8)")
    p.add_argument("--steps", type=int, default=3, help="denoising steps per run (the median step is reported)")
    p.add_argument("--clips-per-chunk", type=int, default=4)
    p.add_argument("--window", choices=["skip", "sliding"], default="skip")
    p.add_argument("--weighting", choices=["distance", "uniform"], default="distance")
    p.add_argument("--guidance", type=float, default=4.5, help="1 = no classifier-free guidance (half the frames)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be >= 2 (step times are measured between consecutive steps)")
    torch.set_num_threads(args.threads)
    pipe = make_pipeline()
    branches = 1 if args.guidance == 1.0 else 2
    print(f"tiny L-C4 (UNet {sum(q.numel() for q in pipe.model.unet.parameters()) / 1e6:.2f} M params), "
          f"{args.resolution}px, {args.window} window, {args.weighting} weights, guidance x{branches}, "
          f"clips_per_chunk={args.clips_per_chunk}, {args.threads} CPU thread(s), median of {args.steps - 1} steps")
    print(f"{'T':>5} {'mode':8} {'clips':>6} {'evals/step':>11} {'UNet frames/step':>17} {'batches':>8} "
          f"{'s/step':>8} {'ms/frame':>9}")
    wall = time.perf_counter()
    for frames in args.frames:
        for mode in args.modes:
            row = measure(pipe, frames, mode, resolution=args.resolution, steps=args.steps,
                          clips_per_chunk=args.clips_per_chunk, window=args.window, weighting=args.weighting,
                          guidance=args.guidance)
            per_frame = 1000 * row["seconds_per_step"] / row["unet_frames_per_step"]
            print(f"{frames:5d} {mode:8} {row['clips']:6d} {row['layout_evals']:11d} "
                  f"{row['unet_frames_per_step']:17.0f} {row['batches_per_step']:8.0f} "
                  f"{row['seconds_per_step']:8.3f} {per_frame:9.2f}", flush=True)
    print(f"total {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
