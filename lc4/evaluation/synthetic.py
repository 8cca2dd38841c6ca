"""Score a colorizer on held-out procedural benchmark videos (`lc4.data.synthetic`).

The questions the benchmark is built to answer: does the model give each shape the colour the
sentence names (instance colour accuracy, chance 1/8), does it *follow* the sentence (swap two
colour words: do the two shapes swap colours?), and does it keep colours stable over a long
video (hue spread, CDC)? On the free-colour split (`evaluate_free_synthetic`), where some colours
are left to the model, does it choose once and keep the choice (flip rates, seam changes), and are
its choices real colours that vary from video to video (commitment)? Held-out seeds start at `HELD_OUT_SEED`, a range no training config
uses (training draws seeds from 0 upwards, validation from 5·10⁶).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from lc4.color import recombine_luminance, to_grey
from lc4.data.synthetic import BACKGROUND_PALETTE, SyntheticVideo, generate_video, swap_caption_colors, to_pixel_values
from lc4.metrics import cdc, hue_spread, instance_color_accuracy, psnr
from lc4.metrics.free_color import FreeColorScores, commitment_scores, free_color_scores

__all__ = ["HELD_OUT_SEED", "SyntheticScores", "FreeScores", "held_out_video", "evaluate_synthetic",
           "evaluate_free_synthetic", "background_accuracy",
           "pipeline_colorizer", "reconstruct", "reconstruction_scores"]

HELD_OUT_SEED = 900_000


@dataclass
class SyntheticScores:
    """Pooled scores over `videos` held-out videos (accuracy pooled over all instance-frames)."""

    videos: int
    instance_accuracy: float
    instance_accuracy_std: float  # across videos
    background_accuracy: float  # the background's colour (its own palette, chance 1/8 too)
    swap_followed: float | None
    swap_count: int
    cdc_x1000: float
    psnr: float
    hue_spread_deg: float
    per_video_accuracy: list[float] = field(default_factory=list)
    # pooled accuracy of the videos with 1, 2, ... shapes (keys are strings, as in JSON): binding
    # two colour words to two shapes is harder than painting one shape as named
    accuracy_by_shape_count: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_out_video(index: int, num_frames: int = 8, size: int = 64, num_shapes: tuple[int, int] = (1, 2),
                   long: bool = False, colors_named: str = "all") -> SyntheticVideo:
    """The `index`-th held-out benchmark video (seed `HELD_OUT_SEED + index`); `colors_named="some"`
    gives its free-colour version (same pixels, some colours left out of the caption)."""
    return generate_video(HELD_OUT_SEED + index, num_frames=num_frames, size=size, num_shapes=num_shapes, long=long,
                          colors_named=colors_named)


def _pool(results: list) -> tuple[float, list[float]]:
    correct, total = sum(r.correct for r in results), sum(r.total for r in results)
    return (correct / total if total else float("nan")), [r.accuracy for r in results if r.total]


def evaluate_synthetic(
    colorize: Callable[[np.ndarray, str], np.ndarray],
    videos: int = 24,
    *,
    num_frames: int = 8,
    size: int = 64,
    num_shapes: tuple[int, int] = (1, 2),
    long: bool = False,
    swaps: bool = True,
    first: int = 0,
) -> SyntheticScores:
    """Run `colorize(grey uint8 (T, H, W, 3), caption) -> RGB uint8` on held-out videos and score it.

    Swap test (when `swaps` and a video has two differently coloured shapes): the caption with the
    two colours exchanged must give *each* of the two shapes the other's colour on at least half
    of its scored frames.
    """
    details, background, followed, cdcs, psnrs, spreads, counts = [], [], [], [], [], [], []
    for k in range(first, first + videos):
        video = held_out_video(k, num_frames, size, num_shapes, long)
        grey = to_grey(video.rgb)
        pred = colorize(grey, video.caption)
        details.append(instance_color_accuracy(pred, video.masks, video.instance_colors, return_details=True))
        counts.append(video.num_instances)
        background.append(background_accuracy(pred, video))
        cdcs.append(cdc(pred, scale=1000))
        psnrs.append(psnr(pred, video.rgb))
        spreads.append(hue_spread(pred, video.masks))
        if swaps and video.num_instances >= 2 and video.instance_colors[0] != video.instance_colors[1]:
            caption, expected = swap_caption_colors(video, 0, 1)
            swapped = instance_color_accuracy(colorize(grey, caption), video.masks, expected, return_details=True)
            pair = [s for s in swapped.instances[:2] if s.total]
            if len(pair) == 2:
                followed.append(all(s.accuracy >= 0.5 for s in pair))
    accuracy, per_video = _pool(details)
    return SyntheticScores(
        videos=videos,
        instance_accuracy=accuracy,
        instance_accuracy_std=float(np.std(per_video)) if per_video else float("nan"),
        background_accuracy=_pool(background)[0],
        swap_followed=float(np.mean(followed)) if followed else None,
        swap_count=len(followed),
        cdc_x1000=float(np.mean(cdcs)),
        psnr=float(np.mean(psnrs)),
        hue_spread_deg=float(np.nanmean(spreads)) if not np.all(np.isnan(spreads)) else float("nan"),
        per_video_accuracy=per_video,
        accuracy_by_shape_count={str(n): _pool([d for d, c in zip(details, counts) if c == n])[0]
                                 for n in sorted(set(counts))},
    )


@dataclass
class FreeScores:
    """Free-colour scores over `videos` held-out free videos, each colorized with every seed of `seeds`.

    Flip rates pool (frame, unnamed shape) pairs over videos and seeds; `*_std` is the spread over
    the seeds' pooled values. `named_accuracy` scores the shapes these captions still name.
    """

    videos: int
    seeds: list[int]
    num_frames: int
    clip_frames: int
    flip_rate_clip: float
    flip_rate_video: float
    seam_change_rate: float
    inner_change_rate: float
    flip_rate_clip_std: float
    flip_rate_video_std: float
    seam_change_rate_std: float
    chroma_ratio: float
    entropy: float
    grey_share: float
    commitment: float
    seed_agreement: float | None
    named_accuracy: float
    choices: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_free_synthetic(
    colorize: Callable[..., np.ndarray],
    videos: int = 16,
    *,
    seeds: tuple[int, ...] = (0, 1),
    num_frames: int = 8,
    size: int = 64,
    num_shapes: tuple[int, int] = (1, 2),
    long: bool = False,
    clip_frames: int = 8,
    first: int = 0,
    palette_size: int = 8,
) -> FreeScores:
    """Run `colorize(grey, caption, seed=s)` on held-out free-colour videos and score the free choices.

    Every video is colorized once per seed of `seeds` (a choice should vary with the seed as well as
    the video: the seed agreement says how often it does not). `clip_frames` sets the clips whose
    seams and majorities the flip rates use (the model's N^f).
    """
    per_seed: dict[int, FreeColorScores] = {s: FreeColorScores() for s in seeds}
    named = []
    for k in range(first, first + videos):
        video = held_out_video(k, num_frames, size, num_shapes, long, colors_named="some")
        grey = to_grey(video.rgb)
        for s in seeds:
            pred = colorize(grey, video.caption, seed=s)
            per_seed[s] += free_color_scores(pred, video.masks, video.unnamed, clip_frames=clip_frames)
            kept = [i for i in range(video.num_instances) if video.named[i]]
            if kept:
                named.append(instance_color_accuracy(pred, video.masks[:, kept], [video.instance_colors[i] for i in kept],
                                                     return_details=True))
    total = sum(per_seed.values(), FreeColorScores())
    commit = commitment_scores(total.choices, total.chroma_ratios, palette_size,
                               per_seed=[per_seed[s].choices for s in seeds])

    def spread(attr: str) -> float:
        values = [v for v in (getattr(per_seed[s], attr) for s in seeds) if np.isfinite(v)]
        return float(np.std(values)) if len(values) > 1 else float("nan")

    return FreeScores(
        videos=videos, seeds=list(seeds), num_frames=num_frames, clip_frames=clip_frames,
        flip_rate_clip=total.flip_rate_clip, flip_rate_video=total.flip_rate_video,
        seam_change_rate=total.seam_change_rate, inner_change_rate=total.inner_change_rate,
        flip_rate_clip_std=spread("flip_rate_clip"), flip_rate_video_std=spread("flip_rate_video"),
        seam_change_rate_std=spread("seam_change_rate"),
        chroma_ratio=commit.chroma_ratio, entropy=commit.entropy, grey_share=commit.grey_share,
        commitment=commit.commitment, seed_agreement=commit.seed_agreement,
        named_accuracy=_pool(named)[0], choices=commit.counts,
    )


def background_accuracy(pred: np.ndarray, video: SyntheticVideo):
    """Per frame, is the mean (a, b) of the pixels no shape covers nearest the named background colour?"""
    return instance_color_accuracy(pred, ~video.masks.any(axis=1, keepdims=True), [video.background_color],
                                   palette=BACKGROUND_PALETTE, return_details=True)


def pipeline_colorizer(pipe, *, steps: int = 20, guidance: float = 4.5, seed: int = 0, **options: Any
                       ) -> Callable[[np.ndarray, str], np.ndarray]:
    """`evaluate_synthetic`'s `colorize` for an `LC4Pipeline` (options: fusion, window, weighting, …);
    `colorize(grey, caption, seed=s)` overrides the seed (the free-colour evaluation's seeds)."""
    default_seed = seed

    def colorize(grey: np.ndarray, caption: str, seed: int | None = None) -> np.ndarray:
        return pipe(grey, caption, num_inference_steps=steps, guidance_scale=guidance,
                    seed=default_seed if seed is None else seed, resolution=grey.shape[1], progress=False,
                    **options).frames

    return colorize


@torch.no_grad()
def reconstruct(model, rgb: np.ndarray) -> np.ndarray:
    """The VAE round trip (E, then D with E^lum's skips; the input's L kept): a colorization's ceiling."""
    from lc4.training.losses import grey_input

    pixels = to_pixel_values(rgb)
    latents = model.encode_frames(pixels, sample=False)
    out = model.decode(latents, model.encode_luminance(grey_input(pixels)))
    return recombine_luminance((out.clamp(-1, 1) + 1) / 2, rgb)


def reconstruction_scores(model, videos: int = 24, num_frames: int = 8, size: int = 64) -> dict[str, float]:
    """Instance accuracy and PSNR of VAE reconstructions of held-out videos (what stage 0 allows)."""
    details, psnrs = [], []
    for k in range(videos):
        video = held_out_video(k, num_frames, size)
        rec = reconstruct(model, video.rgb)
        details.append(instance_color_accuracy(rec, video.masks, video.instance_colors, return_details=True))
        psnrs.append(psnr(rec, video.rgb))
    return {"instance_accuracy": _pool(details)[0], "psnr": float(np.mean(psnrs))}
