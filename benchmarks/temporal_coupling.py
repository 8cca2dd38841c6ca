"""How much does one frame's noise prediction depend on the other frames of its clip?

For held-out free-colour clips (`lc4.evaluation.synthetic`), noised to one timestep as in
training, the gradient of frame k's ε̂ (projected on a random direction) with respect to every
frame's noisy latent; prints, per timestep, the mean norm on the other frames over the norm on
frame k itself. A model whose frames are coloured independently scores 0; a temporal layer that
carries a colour between frames must score well above it (docs/results.md, "Temporal consistency").

    python benchmarks/temporal_coupling.py --model runs/lc4_free_image/export --clips 4
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange

from lc4.training.losses import grey_input
from lc4.data.synthetic import to_pixel_values
from lc4.evaluation.synthetic import held_out_video
from lc4.pipeline import LC4Pipeline


def coupling(model, clip_rgb: torch.Tensor, caption: str, timestep: int, frame: int, seed: int) -> float:
    """Mean ‖∂(ε̂_frame·u)/∂z_j‖ over the other frames j, over that for j = frame."""
    f = clip_rgb.shape[0]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latents = model.encode_frames(clip_rgb, generator=g).float()
        lum = model.encode_luminance(grey_input(clip_rgb))
        y_tex = model.fuse_text(model.encode_prompt([caption]), lum, f)
    sched = model.noise_scheduler("DDPMScheduler")
    t = torch.full((f,), timestep, dtype=torch.long)
    noisy = sched.add_noise(latents, torch.randn(latents.shape, generator=g), t).requires_grad_(True)
    pred = model.predict_noise(noisy, t, y_tex, lum, f)
    direction = torch.randn(pred[frame].shape, generator=g)
    (pred[frame] * direction).sum().backward()
    norms = rearrange(noisy.grad, "f c h w -> f (c h w)").norm(dim=1)
    others = torch.cat([norms[:frame], norms[frame + 1:]])
    return float(others.mean() / norms[frame])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--timesteps", type=int, nargs="+", default=[900, 600, 300])
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = LC4Pipeline.from_pretrained(args.model).model.eval()
    for timestep in args.timesteps:
        ratios = []
        for k in range(args.clips):
            video = held_out_video(k, num_frames=args.frames, colors_named="some")
            rgb = to_pixel_values(video.rgb)
            ratios.append(coupling(model, rgb, video.caption, timestep, args.frames // 2, seed=k))
        print(f"t={timestep}: other frames / own frame = {sum(ratios) / len(ratios):.4f} "
              f"(clips: {', '.join(f'{r:.4f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
