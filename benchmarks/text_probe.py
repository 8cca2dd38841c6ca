"""Does the UNet condition on the sentence? A cheap probe of the one-step prediction x̂₀ at t = T.

From pure noise (the same noise for every caption), the model predicts the clean latents of a
held-out clip once with its own caption, once with another video's caption and once with "".
Prints, per clip, the std of x̂₀ (clean latents have 1), the mean |Δx̂₀| caused by changing and
by dropping the caption, and the mean |Δx̂₀| between neighbouring frames. A model that follows
the sentence moves x̂₀ with the caption far more than between frames.

    python benchmarks/text_probe.py --model runs/demo_stage2/export --clips 3
"""

from __future__ import annotations

import argparse

import torch

from lc4.color import to_grey
from lc4.data.synthetic import to_pixel_values
from lc4.evaluation.synthetic import held_out_video
from lc4.models.lc4 import LC4Model


@torch.no_grad()
def one_step_x0(model: LC4Model, grey, caption: str, seed: int = 0) -> torch.Tensor:
    """x̂₀ predicted at the last training timestep from seeded noise, for `(T, H, W, 3)` uint8 grey frames."""
    sched = model.noise_scheduler("DDPMScheduler")
    t = sched.config.num_train_timesteps - 1
    pixels = to_pixel_values(grey)
    frames, factor = pixels.shape[0], model.vae_scale_factor
    lum = model.encode_luminance(pixels)
    text = model.fuse_text(model.encode_prompt([caption]), lum, frames)
    shape = (frames, model.vae.config.latent_channels, pixels.shape[2] // factor, pixels.shape[3] // factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    out = model.predict_noise(noise, torch.full((frames,), t), text, lum, frames).float()
    alpha = sched.alphas_cumprod[t]
    if sched.config.prediction_type == "v_prediction":
        return alpha.sqrt() * noise - (1 - alpha).sqrt() * out
    return (noise - (1 - alpha).sqrt() * out) / alpha.sqrt().clamp_min(1e-4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/demo_stage2/export")
    p.add_argument("--clips", type=int, default=3)
    args = p.parse_args()
    model = LC4Model.from_pretrained(args.model).eval()
    for k in range(args.clips):
        video = held_out_video(k)
        grey = to_grey(video.rgb)
        own = one_step_x0(model, grey, video.caption)
        other = one_step_x0(model, grey, held_out_video(k + 100).caption)  # an unrelated caption
        empty = one_step_x0(model, grey, "")
        print(f"clip {k}: std {own.std():.3f}  |other caption| {(own - other).abs().mean():.3f}  "
              f"|no caption| {(own - empty).abs().mean():.3f}  |next frame| {(own[1:] - own[:-1]).abs().mean():.3f}")


if __name__ == "__main__":
    main()
