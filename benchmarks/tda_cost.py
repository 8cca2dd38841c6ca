"""Cost of TDA: one UNet forward with and without the temporal module (issue 2).

Measures one forward of `LC4UNet` — SD1.5 size by default: 8 frames, 32×32 latent (256² frames),
77-token context, fp32, random weights, 2 torch threads — for the temporal variants `none`,
`tda`, `temporal_attention` and `conv3d`, and prints, all from one run:

* FLOPs per forward, whole UNet and inside the temporal layers (counted on the meta device with
  `torch.utils.flop_counter`: exact, machine- and load-independent; `grid_sample` is not counted,
  it is ~8 multiply-adds per sampled value, negligible);
* wall-clock and process-CPU seconds per forward (median of `--repeats` runs after `--warmup`),
  and the seconds spent inside the temporal layers (forward hooks);
* the ratios TDA/none, TDA/temporal_attention and TDA/conv3d.

How it is kept fair and cheap:
* every variant shares one set of UNet weights (built once; the variants are built on the meta
  device and the UNet tensors are assigned, not copied), so memory stays ~4 GB per forward;
* the new parts get real random weights, including the normally zero-initialised output
  projections and offset heads (scaled small), so TDA samples at non-grid points;
* runs are interleaved (a warm-up round, then `--repeats` rounds of every variant in turn), so a
  load change on a shared machine hits all variants alike.

    python benchmarks/tda_cost.py --repeats 2            # SD1.5 size (a few minutes on 2 cores)
    python benchmarks/tda_cost.py --tiny --repeats 5     # tiny config, seconds
    python benchmarks/tda_cost.py --tiny --threads 1     # tiny on a busy machine (see below)

On a machine shared with other jobs, compare the process-CPU column rather than wall time; and
time the tiny config with `--threads 1`: its ops are so small that two OpenMP threads spin-wait
on each other whenever one is descheduled, and a 0.03 s forward can take 2 s.
    python benchmarks/tda_cost.py --flops-only           # FLOP counts only, a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from lc4.models import sd15  # noqa: E402
from lc4.models.unet import LC4UNet  # noqa: E402

VARIANTS = ("none", "tda", "temporal_attention", "conv3d")
ZERO_INIT_SCALE = 0.01  # small random weights for the parts that are zero at initialisation


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def randomise_new_parts(model: LC4UNet, seed: int) -> None:
    """Materialise the temporal layers and lum injection with random weights (zero-init parts small)."""
    torch.manual_seed(seed)
    for part in (model.temporal_layers, model.lum_injection):
        part.to_empty(device="cpu")
        for module in part.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    zero_init = [model.lum_injection]
    for layer in model.temporal_layers:
        if hasattr(layer, "to_out"):
            zero_init.append(layer.to_out)
        if hasattr(layer, "sampler"):
            zero_init.append(layer.sampler.offset_net[-1])
        if hasattr(layer, "conv"):
            zero_init.append(layer.conv[-1])
    with torch.no_grad():
        for module in zero_init:
            for p in module.parameters():
                p.mul_(ZERO_INIT_SCALE)


def build_variants(unet_config: dict, kinds: list[str], seed: int = 0) -> dict[str, LC4UNet]:
    """One `LC4UNet` per temporal kind, all sharing one randomly initialised diffusers UNet."""
    torch.manual_seed(seed)
    base = LC4UNet(unet_config=unet_config, temporal_module="none")
    shared = base.unet.state_dict()
    models = {}
    for i, kind in enumerate(kinds):
        with torch.device("meta"):
            model = LC4UNet(unet_config=unet_config, temporal_module=kind)
        model.unet.load_state_dict(shared, assign=True)  # same tensors, no copy
        randomise_new_parts(model, seed + 1 + i)
        models[kind] = model.eval()
    return models


def make_inputs(unet_config: dict, frames: int, latent: int, tokens: int, device: str = "cpu") -> dict:
    """Random `(b f) c h w` latents (b = 1), per-frame context, timestep and E^lum moments."""
    g = torch.Generator().manual_seed(0)
    channels, width = unet_config["in_channels"], unet_config["cross_attention_dim"]
    inputs = {
        "sample": torch.randn(frames, channels, latent, latent, generator=g),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(frames, tokens, width, generator=g),
        "lum_moments": torch.randn(frames, 2 * channels, latent, latent, generator=g),
    }
    return {**{k: v.to(device) for k, v in inputs.items()}, "num_frames": frames}


def count_flops(unet_config: dict, kind: str, inputs: dict) -> tuple[int, int]:
    """(whole forward, inside temporal layers) FLOPs of one forward, counted on the meta device.

    On meta, SDPA runs its math path (matmuls), so attention is counted; CPU kernels would not be.
    """
    with torch.device("meta"):
        model = LC4UNet(unet_config=unet_config, temporal_module=kind)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**{k: v.to("meta") if torch.is_tensor(v) else v for k, v in inputs.items()})
    per_module = counter.get_flop_counts()
    temporal = sum(sum(per_module.get(f"LC4UNet.temporal_layers.{i}", {}).values())
                   for i in range(len(model.temporal_layers)))
    return counter.get_total_flops(), temporal


class LayerTimer:
    """Accumulates wall and process-CPU time spent inside a set of modules (forward hooks)."""

    def __init__(self, modules: list[nn.Module]):
        self.wall = self.cpu = 0.0
        self.calls = 0
        self._start: dict[int, tuple[float, float]] = {}
        for m in modules:
            m.register_forward_pre_hook(self._pre)
            m.register_forward_hook(self._post)

    def _pre(self, module, _args):
        self._start[id(module)] = (time.perf_counter(), time.process_time())

    def _post(self, module, _args, _out):
        wall, cpu = self._start.pop(id(module))
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.calls += 1

    def reset(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = 0


def time_variants(models: dict[str, LC4UNet], inputs: dict, warmup: int, repeats: int,
                  verbose: bool = False) -> dict[str, dict[str, list[float]]]:
    """Interleaved timing rounds; per variant lists of wall/cpu seconds, whole and temporal layers."""
    timers = {k: LayerTimer(list(m.temporal_layers)) for k, m in models.items()}
    runs = {k: {"wall": [], "cpu": [], "temporal_wall": [], "temporal_cpu": []} for k in models}
    with torch.inference_mode():
        for round_ in range(warmup + repeats):
            for kind, model in models.items():
                timers[kind].reset()
                wall, cpu = time.perf_counter(), time.process_time()
                out = model(**inputs)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if not torch.isfinite(out).all():
                    raise FloatingPointError(f"{kind}: non-finite UNet output")
                if round_ >= warmup:
                    r = runs[kind]
                    r["wall"].append(wall)
                    r["cpu"].append(cpu)
                    r["temporal_wall"].append(timers[kind].wall)
                    r["temporal_cpu"].append(timers[kind].cpu)
                if verbose:
                    print(f"  round {round_} {kind:>18}: wall {wall:7.3f} s, cpu {cpu:7.3f} s "
                          f"(temporal layers: wall {timers[kind].wall:.3f} s, {timers[kind].calls} calls)",
                          flush=True)
    return runs


def ratios(values: dict[str, float]) -> dict[str, float]:
    """TDA's value relative to each other variant present."""
    if "tda" not in values:
        return {}
    return {f"tda/{k}": values["tda"] / v for k, v in values.items() if k != "tda" and v > 0}


def run(args: argparse.Namespace) -> dict:
    """FLOPs, then build, warm up and time; returns the results as a JSON-ready mapping."""
    torch.set_num_threads(args.threads)
    unet_config = sd15.config("tiny_unet" if args.tiny else "sd15_unet")
    latent = args.latent or (8 if args.tiny else 32)
    inputs = make_inputs(unet_config, args.frames, latent, args.tokens)
    result: dict = {
        "date": dt.date.today().isoformat(),
        "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "threads": args.threads,
        "config": "tiny" if args.tiny else "sd15",
        "shape": {"frames": args.frames, "latent": latent, "tokens": args.tokens, "dtype": "float32"},
        "variants": list(args.variants),
    }
    flops = {kind: count_flops(unet_config, kind, inputs) for kind in args.variants}
    result["gflops"] = {k: v[0] / 1e9 for k, v in flops.items()}
    result["temporal_gflops"] = {k: v[1] / 1e9 for k, v in flops.items()}
    result["ratios_flops"] = ratios(result["gflops"])
    if args.flops_only:
        return result
    start = time.perf_counter()
    models = build_variants(unet_config, args.variants, args.seed)
    result["build_s"] = time.perf_counter() - start
    result["temporal_params"] = {k: sum(p.numel() for p in m.temporal_layers.parameters())
                                 for k, m in models.items()}
    runs = time_variants(models, inputs, args.warmup, args.repeats, args.verbose)
    result.update(warmup=args.warmup, repeats=args.repeats, runs_s=runs)
    for key in ("wall", "cpu", "temporal_wall", "temporal_cpu"):
        result[f"median_{key}_s"] = {k: statistics.median(r[key]) for k, r in runs.items()}
    result["min_wall_s"] = {k: min(r["wall"]) for k, r in runs.items()}
    result["ratios_wall"] = ratios(result["median_wall_s"])
    result["ratios_cpu"] = ratios(result["median_cpu_s"])
    result["ratios_min_wall"] = ratios(result["min_wall_s"])
    result["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["loadavg_end"] = os.getloadavg()
    return result


def render(r: dict) -> str:
    """A Markdown report of one run."""
    s = r["shape"]
    lines = [
        f"UNet forward, {r['config']} config: {s['frames']} frames, {s['latent']}x{s['latent']} latent, "
        f"{s['tokens']}-token context, {s['dtype']}, torch {r['torch']}, {r['threads']} threads; "
        f"{r['machine']}; {r['date']}",
    ]
    timed = "median_wall_s" in r
    if timed:
        lines.append(f"median of {r['repeats']} runs after {r['warmup']} warm-up (variants interleaved); "
                     f"build {r['build_s']:.1f} s; max RSS {r['max_rss_gib']:.1f} GiB; load average at end "
                     f"{', '.join(f'{x:.2f}' for x in r['loadavg_end'])}")
    lines.append("")
    head = "| temporal module | GFLOP | in temporal layers GFLOP |"
    rule = "|---|---:|---:|"
    if timed:
        head += " wall s | cpu s | wall runs s | temporal layers wall s | temporal layers cpu s |"
        rule += "---:|---:|---|---:|---:|"
    lines += [head, rule]
    for kind in r["variants"]:
        row = f"| {kind} | {r['gflops'][kind]:.4g} | {r['temporal_gflops'][kind]:.4g} |"
        if timed:
            runs = ", ".join(f"{t:.3g}" for t in r["runs_s"][kind]["wall"])
            row += (f" {r['median_wall_s'][kind]:.3g} | {r['median_cpu_s'][kind]:.3g} | {runs} |"
                    f" {r['median_temporal_wall_s'][kind]:.3g} | {r['median_temporal_cpu_s'][kind]:.3g} |")
        lines.append(row)
    lines.append("")
    for name, value in r["ratios_flops"].items():
        line = f"{name}: FLOPs {value:.3f}"
        if timed:
            line += (f", wall {r['ratios_wall'][name]:.3f}, cpu {r['ratios_cpu'][name]:.3f}, "
                     f"min wall {r['ratios_min_wall'][name]:.3f}")
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny UNet config (8x8 latent by default)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after warm-up (median), default 2")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first, default 1")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip N^f, default 8")
    parser.add_argument("--latent", type=int, default=None, help="latent side (default 32, tiny 8)")
    parser.add_argument("--tokens", type=int, default=77, help="context tokens, default 77")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, default 2")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flops-only", action="store_true", help="count FLOPs, skip the timed runs")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every run as it finishes")
    args = parser.parse_args(argv)
    for name in ("repeats", "frames", "tokens", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.latent is not None and args.latent < 1:
        parser.error(f"--latent must be >= 1, got {args.latent}")
    args.variants = list(dict.fromkeys(args.variants))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
