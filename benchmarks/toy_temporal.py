"""A toy free-colour diffusion that shows what a temporal module must learn, in minutes on a CPU.

Each toy clip is 4 frames of a grid of latent cells; a square shape sits in the same cells of every
frame or slides across them, and its colour (one of 4 orthogonal latent vectors, the rest of the
grid 0 = grey) is drawn per clip and never given to the model at sampling: the only input is the
noisy latents and the shape's mask (its "luminance"). So the colour is the model's free choice, as
for an unnamed shape of the procedural benchmark. A denoiser trained on such clips with its frames
independent can only pick each frame's colour from that frame's own noise, so its frames flip; one
whose temporal module reads the other frames can pool their evidence and pick one colour for the
clip. Sampling is the real DDIM scheduler; the flip rate is
`lc4.metrics.free_color.flips_against_majority`.

The settings mirror what separates the real video stage from the toy's simplest case: half of the
training clips with their colour given (a caption that names it), the temporal module trained alone
on a frozen frame-independent denoiser (lc4's video stage on an image model), and shapes that move
2 cells a frame, so that the same place in another frame holds background, not the shape.

    python benchmarks/toy_temporal.py                 # flip rate per setting and temporal module, 2 training seeds
    python benchmarks/toy_temporal.py --settings "moving 2 cells a frame (8x8), all trained" --seeds 0 1 2

The test suite trains the same toy (tests/test_temporal_learning.py) and asserts that multi-frame
training halves the flip rate of the frame-independent denoiser.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from einops import rearrange, repeat
from torch import nn

from lc4.metrics.free_color import GREY, commitment_scores, flips_against_majority, majority
from lc4.models.tda import ClipGeometry, make_temporal_module

KINDS = {  # name: (temporal kind, module options)
    "frames independent": ("none", {}),
    "fixed-location attention": ("temporal_attention", {}),
    "TDA (paper: 2x2x2 pooling)": ("tda", {}),
    "TDA, stride 1": ("tda", {"spatial_stride": 1, "temporal_stride": 1, "padding": "border"}),
    "TDA, stride 1, local heads": ("tda", {"spatial_stride": 1, "temporal_stride": 1, "padding": "border",
                                           "position_bias": True, "position_bias_sigma": (0.5, 1.0)}),
}


def toy_scheduler() -> DDIMScheduler:
    """SD1.5's noise schedule; the denoiser predicts the clean latents."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type="sample", clip_sample=False, set_alpha_to_one=False)


def toy_clips(batch: int, frames: int, size: int, colors: int, generator: torch.Generator, motion: int = 0):
    """(clean latents (b f) c h w, masks (b f) 1 h w, colour index per clip): a square per clip, still or
    sliding `motion` cells a frame along a random axis and direction (always inside the grid)."""
    side = max(1, min(size // 2, size - motion * (frames - 1)))
    if side + motion * (frames - 1) > size:
        raise ValueError(f"a {size}x{size} grid cannot hold a square moving {motion} cells a frame for {frames} frames")
    masks = torch.zeros(batch, frames, 1, size, size)
    corner = torch.randint(0, size - side + 1, (batch, 2), generator=generator)
    if motion:
        axis = torch.randint(0, 2, (batch,), generator=generator)
        backward = torch.randint(0, 2, (batch,), generator=generator)
        travel = torch.randint(0, size - side - motion * (frames - 1) + 1, (batch,), generator=generator)
        corner[torch.arange(batch), axis] = travel
    for i, (y, x) in enumerate(corner.tolist()):
        for f in range(frames):
            step = motion * ((frames - 1 - f) if motion and backward[i] else f)
            dy, dx = (step, 0) if motion and axis[i] == 0 else (0, step)
            masks[i, f, :, y + dy:y + dy + side, x + dx:x + dx + side] = 1
    color = torch.randint(0, colors, (batch,), generator=generator)
    masks = rearrange(masks, "b f c h w -> (b f) c h w")
    clean = repeat(torch.eye(colors)[color], "b c -> (b f) c 1 1", f=frames) * masks
    return clean, masks, color


class ToyDenoiser(nn.Module):
    """Per-cell MLP → attention within each frame → temporal module (residual, starts at zero) → per-cell
    MLP; predicts x_0. The spatial attention lets a frame's cells agree on one colour, as a UNet's do."""

    def __init__(self, kind: str = "none", colors: int = 4, dim: int = 32, heads: int = 4, **options: object):
        super().__init__()
        self.colors = colors
        self.embed = nn.Sequential(nn.Linear(2 * colors + 1 + 8, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.spatial = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.spatial_norm = nn.LayerNorm(dim)
        self.temporal = None if kind == "none" else make_temporal_module(kind, dim, heads, dim // heads, **options)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, colors))

    def forward(self, noisy: torch.Tensor, masks: torch.Tensor, t: torch.Tensor, frames: int,
                named: torch.Tensor | None = None) -> torch.Tensor:
        """`named`: (n, colors) one-hot of the colour a "caption" names for each frame's shape, 0 = unnamed."""
        n, _, h, w = noisy.shape
        named = noisy.new_zeros(n, self.colors) if named is None else named
        freqs = torch.exp(torch.arange(4, dtype=torch.float32) * -math.log(100.0) / 4)
        phase = t.float()[:, None] / 1000 * freqs[None] * 100
        time = repeat(torch.cat([phase.sin(), phase.cos()], dim=-1).expand(n, -1), "n c -> n (h w) c", h=h, w=w)
        caption = repeat(named, "n c -> n (h w) c", h=h, w=w)
        tokens = torch.cat([rearrange(noisy, "n c h w -> n (h w) c"), rearrange(masks, "n c h w -> n (h w) c"), time,
                            caption], -1)
        hidden = self.embed(tokens)
        normed = self.spatial_norm(hidden)
        hidden = hidden + self.spatial(normed, normed, normed, need_weights=False)[0]
        if self.temporal is not None:
            hidden = hidden + self.temporal(hidden, ClipGeometry(frames, h, w))
        return rearrange(self.head(hidden), "n (h w) c -> n c h w", h=h)


def train_toy(model: ToyDenoiser, steps: int = 400, *, frames: int = 4, size: int = 4, batch: int = 16,
              lr: float = 3e-3, seed: int = 0, named_fraction: float = 0.0, only_temporal: bool = False,
              motion: int = 0) -> ToyDenoiser:
    """x_0-prediction training, one timestep per clip (as lc4's video stage noises a clip).

    `named_fraction`: share of clips whose colour is given, as a caption names a shape's colour.
    `only_temporal`: train the temporal module alone, the rest frozen (lc4's video stage on an image model).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    scheduler = toy_scheduler()
    trained = model.temporal.parameters() if only_temporal else model.parameters()
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    for _ in range(steps):
        clean, masks, color = toy_clips(batch, frames, size, model.colors, generator, motion)
        t = repeat(torch.randint(0, 1000, (batch,), generator=generator), "b -> (b f)", f=frames)
        noisy = scheduler.add_noise(clean, torch.randn(clean.shape, generator=generator), t)
        is_named = torch.rand(batch, generator=generator) < named_fraction
        named = repeat(torch.eye(model.colors)[color] * is_named[:, None], "b c -> (b f) c", f=frames)
        loss = (model(noisy, masks, t, frames, named) - clean).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@dataclass
class ToyScores:
    flip_rate: float  # share of scored frames off their clip's majority colour
    coloured: float  # share of frames whose shape has a colour (not grey)
    entropy: float  # of the clips' majority colours, / log(colours): 0 = always the same colour


@torch.no_grad()
def toy_scores(model: ToyDenoiser, clips: int = 64, *, frames: int = 4, size: int = 4, steps: int = 10,
               seed: int = 1000, motion: int = 0) -> ToyScores:
    """Sample `clips` unnamed toy clips with DDIM, every frame from its own noise, and score the shape's colour.

    A frame's label is the colour vector its shape's mean latent is nearest to (by dot product), or
    grey when that mean is under half a colour's.
    """
    generator = torch.Generator().manual_seed(seed)
    _, masks, _ = toy_clips(clips, frames, size, model.colors, generator, motion)
    scheduler = toy_scheduler()
    scheduler.set_timesteps(steps)
    latents = torch.randn(masks.shape[0], model.colors, size, size, generator=generator)
    for t in scheduler.timesteps:
        x0 = model(latents, masks, t.expand(latents.shape[0]), frames)
        latents = scheduler.step(x0, t, latents).prev_sample
    shape_mean = (latents * masks).sum((-2, -1)) / masks.sum((-2, -1))  # (n, colors)
    best, index = shape_mean.max(dim=-1)
    labels = [str(i) if b >= 0.5 else GREY for i, b in zip(index.tolist(), best.tolist())]
    flips = scored = 0
    choices = []
    for start in range(0, len(labels), frames):
        f, s = flips_against_majority(labels[start:start + frames])
        flips, scored = flips + f, scored + s
        choices.append(majority(labels[start:start + frames]))
    entropy = commitment_scores(choices, [1.0] * len(choices), palette_size=model.colors).entropy
    return ToyScores(flips / max(scored, 1), sum(x != GREY for x in labels) / len(labels), entropy)


def on_frozen_base(base: ToyDenoiser, kind: str, **options: object) -> ToyDenoiser:
    """A denoiser with `base`'s weights and a fresh temporal module (zero output: it starts as `base`)."""
    model = ToyDenoiser(kind, base.colors, **options)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("temporal.") for k in missing), (missing, unexpected)
    return model


@dataclass(frozen=True)
class Setting:
    named_fraction: float = 0.0  # share of training clips whose colour is given
    frozen_base: bool = False  # train the temporal module alone on a frame-independent base
    size: int = 4  # grid cells a side
    motion: int = 0  # cells the shape slides a frame


SETTINGS = {
    "static, all trained": Setting(),
    "static, all trained, half the clips named": Setting(named_fraction=0.5),
    "static, temporal alone on a frozen base": Setting(frozen_base=True),
    "static, temporal alone on a frozen base, half named": Setting(0.5, True),
    "moving 2 cells a frame (8x8), all trained": Setting(size=8, motion=2),
    "moving 2 cells a frame (8x8), temporal alone on a frozen base": Setting(frozen_base=True, size=8, motion=2),
}


def run_setting(setting: Setting, kind: str, options: dict, seed: int, steps: int, clips: int,
                base: ToyDenoiser | None = None) -> tuple[ToyScores, ToyDenoiser]:
    """Train one toy denoiser in `setting` (on `base` when the setting freezes one); its scores and itself."""
    data = {"size": setting.size, "motion": setting.motion}
    if kind == "none" or not setting.frozen_base:
        model = train_toy(ToyDenoiser(kind, **options), steps, seed=seed, named_fraction=setting.named_fraction,
                          **data)
    else:
        model = train_toy(on_frozen_base(base, kind, **options), steps, seed=seed + 100, only_temporal=True,
                          named_fraction=setting.named_fraction, **data)
    return toy_scores(model, clips, **data), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS),
                        help="temporal modules to train (frames independent is always the reference)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"toy free-colour clips: 4 frames, 4 colours; {args.steps} training steps (a frozen base: as many again "
          f"before); flip rate within clips over {args.clips} sampled unnamed clips, {len(args.seeds)} seeds")
    for name in args.settings:
        setting = SETTINGS[name]
        print(f"-- {name}")
        bases = {}
        base_flip = None
        for label in ["frames independent"] + [k for k in args.kinds if k != "frames independent"]:
            kind, options = KINDS[label]
            runs = []
            for seed in args.seeds:
                scores, model = run_setting(setting, kind, options, seed, args.steps, args.clips, bases.get(seed))
                runs.append(scores)
                if kind == "none":  # the base of this seed's temporal runs when the setting freezes one
                    bases[seed] = model
            flip, coloured, entropy = (sum(getattr(r, k) for r in runs) / len(runs)
                                       for k in ("flip_rate", "coloured", "entropy"))
            base_flip = flip if base_flip is None else base_flip
            print(f"{label:30s} flip {flip:.3f} ({', '.join(f'{r.flip_rate:.3f}' for r in runs)})  "
                  f"coloured {coloured:.2f}  choice entropy {entropy:.2f}  "
                  f"vs independent {flip / max(base_flip, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
