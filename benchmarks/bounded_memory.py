"""Peak memory of the denoising loop against the video's length, per CCF mode (issue 3).

Two measures, both on the tiny random model on the CPU:

* **live tensor bytes** (default): a `TorchDispatchMode` sees every tensor an aten op returns and
  counts the bytes of its storage until the last Python reference to it dies. It isolates the
  denoising loop (tracking restarts when `sample_latents` starts) and is exact and repeatable:
  no allocator caching, no import or model memory, no noise from other processes. It does not
  see scratch buffers inside one kernel (e.g. a conv's im2col), which are freed before the op
  returns. tracemalloc cannot do this job: torch's CPU allocator does not go through Python's.
* **max RSS** (`--rss`): `resource.getrusage` in a fresh subprocess per length, before and after
  the run. It is what the operating system sees, but the tiny model's activations (a few MB) are
  lost in the ~0.5 GB of torch/transformers that every process carries, so it only shows that
  nothing large grows.

    python benchmarks/bounded_memory.py                          # T = 32, 256; bounded, none, exact
    python benchmarks/bounded_memory.py --frames 32 128 512 --modes bounded --resolution 64
    python benchmarks/bounded_memory.py --rss                    # also max RSS per run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the storages of tensors created under this mode that are still referenced.

    `current` and `peak` are in bytes; `reset_peak()` starts a new phase. A storage is counted
    once however many views of it exist; it leaves the count when the last tracked view dies.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, list[int]] = {}  # storage pointer -> [bytes, live views]
        self.current = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.current

    def _release(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[key]

    def _track(self, t: torch.Tensor) -> None:
        if t.device.type != "cpu" or t.is_sparse:
            return
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0:
            return
        entry = self._live.get(key)
        if entry is None:
            entry = self._live[key] = [storage.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor):
                self._track(item)
        return out


@contextmanager
def loop_phase(tracker: LiveTensorBytes, record: dict[str, int]) -> Iterator[None]:
    """Within the block, the pipeline's `sample_latents` records the loop's start level and peak."""
    import lc4.pipeline as pipeline_module

    original = pipeline_module.sample_latents

    def measured(*args: Any, **kwargs: Any):
        record["before_loop"] = tracker.current
        tracker.reset_peak()
        out = original(*args, **kwargs)
        record["loop_peak"] = tracker.peak
        return out

    pipeline_module.sample_latents = measured
    try:
        yield
    finally:
        pipeline_module.sample_latents = original


def make_pipeline(seed: int = 0):
    """Tiny random L-C4 with small random temporal out-projections (so exact CCF does real work)."""
    import lc4

    pipe = lc4.LC4Pipeline.from_config(lc4.LC4Config.tiny(), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in pipe.model.unet.temporal_layers:
            layer.to_out.weight.copy_(torch.randn(layer.to_out.weight.shape, generator=gen) * 0.05)
    return pipe


def grey_video(frames: int, size: int, seed: int = 0) -> np.ndarray:
    """A smooth moving grey pattern, (T, size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    g = 128 + 90 * np.sin(2 * np.pi * (xx / size + t / 37.0 + seed)) * np.cos(2 * np.pi * yy / size)
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def measure(pipe, frames: int, fusion: str, resolution: int = 32, steps: int = 2,
            clips_per_chunk: int = 4) -> dict[str, Any]:
    """Live-tensor bytes of one run: O(T) state before the loop, the loop's peak, and the time taken."""
    video = grey_video(frames, resolution)
    tracker, record = LiveTensorBytes(), {}
    start = time.perf_counter()
    with loop_phase(tracker, record), tracker:
        for _ in pipe.colorize_chunks(video, "a red car on a grey road", num_inference_steps=steps,
                                      resolution=resolution, fusion=fusion, clips_per_chunk=clips_per_chunk,
                                      keep_luminance=False, progress=False):
            pass
    return {"frames": frames, "fusion": fusion, "resolution": resolution, "seconds": time.perf_counter() - start,
            **record}


def rss_child(frames: int, fusion: str, resolution: int, steps: int, threads: int = 1) -> dict[str, float]:
    """Run once in this (fresh) process: max RSS in MiB before and after the run."""
    import resource

    torch.set_num_threads(threads)
    pipe = make_pipeline()
    video = grey_video(frames, resolution)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in pipe.colorize_chunks(video, "a red car on a grey road", num_inference_steps=steps, resolution=resolution,
                                  fusion=fusion, keep_luminance=False, progress=False):
        pass
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"maxrss_before_mib": before, "maxrss_after_mib": after}


def rss_in_subprocess(frames: int, fusion: str, resolution: int, steps: int, threads: int = 1) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", json.dumps([frames, fusion, resolution, steps, threads])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[32, 256])
    p.add_argument("--modes", nargs="+", default=["bounded", "none", "exact"],
                   choices=["bounded", "none", "exact", "auto"])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--clips-per-chunk", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rss", action="store_true", help="also max RSS, one fresh subprocess per run")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(rss_child(*json.loads(args.child))))
        return 0
    torch.set_num_threads(args.threads)
    pipe = make_pipeline()
    rows = []
    print(f"tiny L-C4, {args.resolution}px, {args.steps} steps, clips_per_chunk={args.clips_per_chunk}, "
          f"{args.threads} threads; MiB of live torch tensors")
    print(f"{'mode':8} {'T':>5} {'before loop':>12} {'loop peak':>10} {'vs first T':>10} {'s':>6}"
          + ("  maxRSS before/after" if args.rss else ""))
    for mode in args.modes:
        base = None
        for frames in args.frames:
            row = measure(pipe, frames, mode, args.resolution, args.steps, args.clips_per_chunk)
            base = base or row["loop_peak"]
            line = (f"{mode:8} {frames:5d} {row['before_loop'] / 2**20:12.2f} {row['loop_peak'] / 2**20:10.2f} "
                    f"{row['loop_peak'] / base:9.2f}x {row['seconds']:6.1f}")
            if args.rss:
                row |= rss_in_subprocess(frames, mode, args.resolution, args.steps, args.threads)
                line += f"  {row['maxrss_before_mib']:.0f}/{row['maxrss_after_mib']:.0f} MiB"
            print(line, flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
