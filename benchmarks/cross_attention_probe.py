"""Does the UNet's cross-attention route each shape's pixels to that shape's words?

On the held-out two-shape videos, the clean clip is noised to a timestep t and the UNet is run
once with y^tex as training builds it (CMPF when the model has it). Every cross-attention
layer's (attn2) attention from the pixels inside shape i (its mask pooled to the layer's grid)
is summed over the tokens of shape i's own words (its colour word and its shape noun) and over
the other shape's words. The table prints, per layer and t,

* **own share**: own / (own + other), averaged over heads, shapes and frames; 0.5 means the
  layer does not tell the two shapes' words apart, 1.0 that it routes each shape to its own;
* **words**: the attention mass on the four words together (the rest goes to BOS/padding and
  the other words of the sentence).

    python benchmarks/cross_attention_probe.py --model lc4/assets/demo-model --videos 24
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import torch

from lc4.data.synthetic import SyntheticVideo, instance_words, to_pixel_values
from lc4.evaluation.synthetic import held_out_video
from lc4.models.lc4 import LC4Model
from lc4.training.grounding import instance_token_indicator, own_word_share, recorded_cross_attention
from lc4.training.losses import grey_input


@torch.no_grad()
def probe_video(model: LC4Model, video: SyntheticVideo, t: int, generator: torch.Generator) -> dict[str, list]:
    """Per attn2 layer: [(own, other)] attention masses, one per (shape, frame, head) with a visible shape."""
    rgb = to_pixel_values(video.rgb)
    f = rgb.shape[0]
    latents = model.encode_frames(rgb, sample=False).float()
    text = model.encode_prompt([video.caption])
    lum = model.encode_luminance(grey_input(rgb))
    y_tex = model.fuse_text(text, lum, f, use_cmpf=model.cmpf is not None)
    sched = model.noise_scheduler("DDPMScheduler")
    steps = torch.full((f,), t, dtype=torch.long)
    noisy = sched.add_noise(latents, torch.randn(latents.shape, generator=generator), steps)
    indicator = instance_token_indicator([video.caption], [instance_words(video)], model.tokenizer, video.num_instances,
                                         text.embeddings.shape[1]).repeat(f, 1, 1)
    masks = torch.from_numpy(video.masks).float()  # (f, n, H, W)
    out: dict[str, list] = defaultdict(list)
    with recorded_cross_attention(model.unet) as maps:
        model.predict_noise(noisy, steps, y_tex, lum, f)
    for name, calls in maps.items():
        for attention in calls:
            own, other, valid = own_word_share(attention, masks, indicator)  # (f, heads, n), (f, n)
            for fr, i in torch.nonzero(valid).tolist():
                out[name].extend(zip(own[fr, :, i].tolist(), other[fr, :, i].tolist()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lc4/assets/demo-model")
    p.add_argument("--videos", type=int, default=24, help="held-out videos to look through (two-shape ones are used)")
    p.add_argument("--timesteps", type=int, nargs="+", default=[900, 600, 300])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the table here")
    args = p.parse_args()
    model = LC4Model.from_pretrained(args.model).eval()
    rows = {}
    for t in args.timesteps:
        g = torch.Generator().manual_seed(args.seed)
        per_layer: dict[str, list] = defaultdict(list)
        for k in range(args.videos):
            video = held_out_video(k)
            if video.num_instances == 2:
                for name, pairs in probe_video(model, video, t, g).items():
                    per_layer[name].extend(pairs)
        for name, pairs in per_layer.items():
            arr = np.asarray(pairs)
            share = float(np.mean(arr[:, 0] / np.clip(arr.sum(1), 1e-9, None)))
            rows[f"{name} t={t}"] = {"own_share": share, "words": float(arr.sum(1).mean()), "n": len(arr)}
    print(f"{'layer':<60} {'own share':>9} {'words':>6}")
    for key, r in rows.items():
        print(f"{key:<60} {r['own_share']:>9.3f} {r['words']:>6.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
