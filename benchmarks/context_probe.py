"""Can the other frames of a clip read one frame's colour? A one-step probe of the temporal layers.

For held-out free-colour clips (captions that name no colour, `colors_named="none"`), all frames are
noised to timestep t with one noise draw, and the model predicts x̂₀ for every frame in one call, with
frame 0 given three ways:

* **same noise**: frame 0 at t like the others (what keyframe replacement gives the model);
* **clean**: frame 0's true latent at timestep 0 (a clean context frame, per-frame timesteps);
* **wrong, clean**: frame 0 recoloured (its shapes another palette colour) at timestep 0.

Frames 1 … N−1 are then decoded and scored: instance accuracy against the true colours (chance 1/8),
the share of shapes that take the colour frame 0 shows (the recoloured one in the last row), and how
far their x̂₀ moved from the first row's (relative L2).
A model whose temporal layers carry a cleaner frame's colour moves frames 1 … N−1 towards frame 0's
colour; one that ignores the other frames scores the same in all three rows.

`--layers` looks inside: per temporal layer, the size of its update against its input, and how much
frames 1 … N−1's update moves when frame 0 is given clean, against how much frame 0's own input moves;
for TDA layers also where the deformed sampling points went: the share outside the clip (where
eq. 2 reads zeros) and the mean time of the first temporal slice (0.5 on the reference grid).

    python benchmarks/context_probe.py --model runs/pilot_ctx/export --clips 16 --timesteps 700 500 300
    python benchmarks/context_probe.py --model runs/pilot_ctx/export --clips 4 --timesteps 700 --layers
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def recolour(video, frames: int, shift: int = 3):
    """The same video (same seed, pixels, motion) with every shape `shift` palette colours further on."""
    from lc4.data.synthetic import SHAPE_PALETTE, generate_video

    names = [c.name for c in SHAPE_PALETTE.colors]
    wrong = [names[(names.index(c) + shift) % len(names)] for c in video.instance_colors]
    other = generate_video(video.seed, num_frames=frames, size=video.rgb.shape[1], num_shapes=(1, 2), long=video.long,
                           colors_named="none", instance_colors=wrong, background_color=video.background_color)
    return other.rgb, wrong


def clip_inputs(model, video, t: int, generator: torch.Generator):
    """Clean latents, the clip noised to `t`, E^lum features and text conditioning of one video."""
    from lc4.data.synthetic import to_pixel_values
    from lc4.training.losses import grey_input

    f = video.rgb.shape[0]
    pixels = to_pixel_values(video.rgb)
    latents = model.encode_frames(pixels, sample=False)
    lum = model.encode_luminance(grey_input(pixels))
    y_tex = model.fuse_text(model.encode_prompt([video.caption]), lum, f, use_cmpf=model.cmpf is not None)
    noise = torch.randn(latents.shape, generator=generator)
    ts = torch.full((f,), t, dtype=torch.long)
    noisy = model.noise_scheduler("DDPMScheduler").add_noise(latents, noise, ts)
    return latents, noisy, ts, lum, y_tex


def sampling_points(layer, hidden: torch.Tensor, geometry) -> dict[str, float]:
    """A TDA layer's deformed sampling points p + αΔp for `hidden`: the share outside the clip in any
    axis, and the first temporal slice's mean time; {} for modules without a deformable sampler."""
    from einops import rearrange

    sampler = getattr(layer, "sampler", None)
    if sampler is None:
        return {}
    f, h, w = geometry.num_frames, geometry.height, geometry.width
    clip = rearrange(layer.norm(hidden), "(b f) (h w) c -> b c f h w", f=f, h=h).contiguous()
    points = sampler.points(clip)  # (b, F', H', W', 3) as x, y, t
    size = points.new_tensor([w, h, f])
    outside = ((points < -0.5) | (points > size - 0.5)).any(-1)
    return {"sampled outside": float(outside.float().mean()), "first slice t": float(points[:, 0, ..., 2].mean())}


@torch.no_grad()
def layer_probe(model, video, t: int, generator: torch.Generator) -> list[dict[str, float]]:
    """Per temporal layer: |update| / |input| of frames 1 … N−1, and how far their update and frame 0's
    input move (relative L2) when frame 0 is given clean at timestep 0."""
    latents, noisy, ts, lum, y_tex = clip_inputs(model, video, t, generator)
    f = ts.shape[0]
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    points: dict[int, dict[str, float]] = {}

    def record(i, module, args, out):
        if i not in seen:  # the first call: every frame at t
            points[i] = sampling_points(module, *args)
        seen[i] = (args[0], out)

    hooks = [layer.register_forward_hook(lambda m, a, out, i=i: record(i, m, a, out))
             for i, layer in enumerate(model.unet.temporal_layers)]
    try:
        model.predict_noise(noisy, ts, y_tex, lum, f)
        before = dict(seen)
        steps = ts.clone()
        steps[0] = 0
        model.predict_noise(torch.cat([latents[:1], noisy[1:]]), steps, y_tex, lum, f)
    finally:
        for hook in hooks:
            hook.remove()
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    return [{"update / input": float(before[i][1][1:].norm() / before[i][0][1:].norm()),
             "update moved": rel(seen[i][1][1:], before[i][1][1:]),
             "frame 0 input moved": rel(seen[i][0][:1], before[i][0][:1]), **points[i]} for i in sorted(before)]


@torch.no_grad()
def probe(model, video, t: int, generator: torch.Generator) -> dict[str, dict[str, float]]:
    from lc4.color import recombine_luminance
    from lc4.data.synthetic import to_pixel_values
    from lc4.metrics import instance_color_accuracy

    sched = model.noise_scheduler("DDPMScheduler")
    f = video.rgb.shape[0]
    latents, noisy, ts, lum, y_tex = clip_inputs(model, video, t, generator)
    wrong_rgb, wrong_colors = recolour(video, f)
    wrong_latent = model.encode_frames(to_pixel_values(wrong_rgb[:1]), sample=False)
    rows, base = {}, None
    for name, first, t0 in (("same noise", noisy[:1], t), ("clean", latents[:1], 0), ("wrong, clean", wrong_latent, 0)):
        x = torch.cat([first, noisy[1:]])
        steps = ts.clone()
        steps[0] = t0
        pred = model.predict_noise(x, steps, y_tex, lum, f).float()
        abar = sched.alphas_cumprod[steps].float().view(-1, 1, 1, 1)
        if sched.config.prediction_type == "v_prediction":
            x0 = abar.sqrt() * x - (1 - abar).sqrt() * pred
        else:
            x0 = (x - (1 - abar).sqrt() * pred) / abar.sqrt().clamp_min(1e-4)
        base = x0[1:] if base is None else base
        moved = float(((x0[1:] - base).flatten(1).norm(dim=1) / base.flatten(1).norm(dim=1)).mean())
        rgb = ((model.decode(x0[1:], lum.select(slice(1, f))).clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        rgb = recombine_luminance(rgb, video.rgb[1:])
        masks = video.masks[1:]
        rows[name] = {"true": instance_color_accuracy(rgb, masks, video.instance_colors),
                      "frame 0's": instance_color_accuracy(rgb, masks, wrong_colors if name.startswith("wrong")
                                                           else video.instance_colors),
                     "moved": moved}
    return rows


def main() -> None:
    from lc4.evaluation.synthetic import held_out_video
    from lc4.pipeline import LC4Pipeline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--timesteps", type=int, nargs="+", default=[900, 700, 500])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--layers", action="store_true", help="per temporal layer: how much frame 0 moves its update")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = LC4Pipeline.from_pretrained(args.model).model.eval()
    n = model.config.num_frames
    out = {}
    if args.layers:
        for t in args.timesteps:
            gen = torch.Generator().manual_seed(args.seed)
            per = [layer_probe(model, held_out_video(k, n, 64, long=True, colors_named="none"), t, gen)
                   for k in range(args.clips)]
            out[t] = [{k: round(float(np.mean([r[i][k] for r in per])), 4) for k in per[0][i]} for i in range(len(per[0]))]
            for i, row in enumerate(out[t]):
                print(f"t={t} layer {i}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
        print(json.dumps({"model": args.model, "clips": args.clips, "frames": n, "layers": out}))
        return
    for t in args.timesteps:
        gen = torch.Generator().manual_seed(args.seed)
        per = [probe(model, held_out_video(k, n, 64, long=True, colors_named="none"), t, gen) for k in range(args.clips)]
        out[t] = {row: {k: round(float(np.nanmean([r[row][k] for r in per])), 4) for k in per[0][row]} for row in per[0]}
        print(f"t={t}: " + "; ".join(f"{row}: true {v['true']:.2f}, frame 0's {v['''frame 0's''']:.2f}, "
                                     f"x0 moved {v['moved']:.4f}" for row, v in out[t].items()), flush=True)
    print(json.dumps({"model": args.model, "clips": args.clips, "frames": n, "results": out}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
