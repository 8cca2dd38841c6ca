"""Metrics for a colour that is the model's free choice: does it choose once and keep it?

For a shape whose colour the caption leaves unnamed (the free-colour split of the procedural
benchmark, :mod:`lc4.data.synthetic.naming`) there is no right colour, only a consistent one.
Each scored frame of such a shape gets a **label**: the palette colour nearest its mean
predicted (a, b) (as in :func:`~lc4.metrics.instance.instance_color_accuracy`), or ``"grey"``
when its mean chroma is below ``grey_fraction`` of the palette's, so a shape that fades to grey
and back has changed colour too.

* :func:`free_color_scores` – per video:
  - **flip rate**: the share of a shape's scored frames whose label differs from the shape's
    majority label over a *scope*: each clip of ``clip_frames`` consecutive frames ("within
    clips") and the whole video ("over the video");
  - **seam change rate**: the share of neighbouring scored frame pairs that straddle a clip seam
    (frame ``k·clip_frames − 1`` → ``k·clip_frames``) whose labels differ, beside the same rate
    for pairs inside a clip (what clip-by-clip inference breaks is the seams);
  - the shape's mean chroma over the palette's and its majority label (its "choice").
* :func:`commitment_scores` – over many videos and sampling seeds: the chroma ratio, the
  normalised entropy of the colours chosen (grey is no colour: 0 = always the same colour or
  grey, 1 = every palette colour alike)
  and **commitment** = chroma ratio (at most 1) × entropy. A model that paints every unnamed shape
  grey, or always the same colour, scores a flip rate of 0 but a commitment near 0, so flip rates
  are read next to commitment, never alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .instance import _palette_table, instance_mean_ab

__all__ = ["GREY", "FreeColorScores", "Commitment", "free_color_labels", "free_color_scores", "commitment_scores",
           "flips_against_majority"]

GREY = "grey"


def free_color_labels(pred_rgb: Any, masks: Any, palette: Any = None, *, grey_fraction: float = 0.35,
                      min_pixels: int = 10, erode: int = 1) -> tuple[list[list[str | None]], np.ndarray]:
    """Per instance, the label of every frame (``None`` where not scored), and the ``(T, n)`` chroma.

    ``masks`` ``(T, n, H, W)`` bool; labels are palette names or :data:`GREY`.
    """
    if not 0.0 <= grey_fraction < 1.0:
        raise ValueError(f"grey_fraction must be in [0, 1), got {grey_fraction}")
    names, ab = _palette_table(palette)
    mean, valid = instance_mean_ab(pred_rgb, masks, min_pixels=min_pixels, erode=erode)
    chroma = np.linalg.norm(mean, axis=-1)  # NaN where not scored
    nearest = np.linalg.norm(np.nan_to_num(mean)[:, :, None, :] - ab[None, None], axis=-1).argmin(-1)
    grey_below = grey_fraction * float(np.linalg.norm(ab, axis=-1).mean())
    labels = [[(GREY if chroma[t, i] < grey_below else names[nearest[t, i]]) if valid[t, i] else None
               for t in range(mean.shape[0])] for i in range(mean.shape[1])]
    return labels, chroma


def majority(labels: Sequence[str | None]) -> str | None:
    """The most frequent label (ties: the one seen first); None when nothing was scored."""
    counts = Counter(x for x in labels if x is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(x for x in labels if x is not None and counts[x] == top)


def flips_against_majority(labels: Sequence[str | None], scope: int | None = None) -> tuple[int, int]:
    """(frames whose label differs from their scope's majority, scored frames).

    ``scope`` frames per block (consecutive, from frame 0; the last block may be shorter);
    ``None`` = the whole sequence is one block.
    """
    size = len(labels) if scope is None else int(scope)
    if size < 1:
        raise ValueError(f"scope must be >= 1, got {scope}")
    flips = scored = 0
    for start in range(0, len(labels), size):
        block = labels[start:start + size]
        top = majority(block)
        flips += sum(x is not None and x != top for x in block)
        scored += sum(x is not None for x in block)
    return flips, scored


def _pair_changes(labels: Sequence[str | None], clip_frames: int) -> tuple[int, int, int, int]:
    """(changes, pairs) at clip seams, then (changes, pairs) inside clips, over neighbouring scored frames."""
    seam = [0, 0]
    inner = [0, 0]
    for t in range(len(labels) - 1):
        a, b = labels[t], labels[t + 1]
        if a is None or b is None:
            continue
        bucket = seam if (t + 1) % clip_frames == 0 else inner
        bucket[0] += a != b
        bucket[1] += 1
    return seam[0], seam[1], inner[0], inner[1]


def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


@dataclass
class FreeColorScores:
    """The free-colour scores of one video (counts kept, so videos pool by summing)."""

    clip_flips: int = 0
    video_flips: int = 0
    scored: int = 0
    seam_changes: int = 0
    seam_pairs: int = 0
    inner_changes: int = 0
    inner_pairs: int = 0
    choices: list[str | None] = field(default_factory=list)  # majority label per instance
    chroma_ratios: list[float] = field(default_factory=list)  # mean chroma / the palette's, per instance

    @property
    def flip_rate_clip(self) -> float:
        return _rate(self.clip_flips, self.scored)

    @property
    def flip_rate_video(self) -> float:
        return _rate(self.video_flips, self.scored)

    @property
    def seam_change_rate(self) -> float:
        return _rate(self.seam_changes, self.seam_pairs)

    @property
    def inner_change_rate(self) -> float:
        return _rate(self.inner_changes, self.inner_pairs)

    def __add__(self, other: "FreeColorScores") -> "FreeColorScores":
        a, b = asdict(self), asdict(other)
        return FreeColorScores(**{k: a[k] + b[k] for k in a})

    def summary(self) -> dict[str, float]:
        return {"flip_rate_clip": self.flip_rate_clip, "flip_rate_video": self.flip_rate_video,
                "seam_change_rate": self.seam_change_rate, "inner_change_rate": self.inner_change_rate}


def free_color_scores(pred_rgb: Any, masks: Any, instances: Sequence[int] | None = None, *, clip_frames: int = 8,
                      palette: Any = None, grey_fraction: float = 0.35, min_pixels: int = 10,
                      erode: int = 1) -> FreeColorScores:
    """Flip rates, seam change counts, choices and chroma of the ``instances`` (default: all) of one video."""
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    labels, chroma = free_color_labels(pred_rgb, masks, palette, grey_fraction=grey_fraction,
                                       min_pixels=min_pixels, erode=erode)
    _, ab = _palette_table(palette)
    palette_chroma = float(np.linalg.norm(ab, axis=-1).mean())
    out = FreeColorScores()
    for i in range(len(labels)) if instances is None else instances:
        seq = labels[i]
        if not any(x is not None for x in seq):
            continue
        clip_flips, scored = flips_against_majority(seq, clip_frames)
        video_flips, _ = flips_against_majority(seq)
        s, sp, n, np_ = _pair_changes(seq, clip_frames)
        out += FreeColorScores(clip_flips, video_flips, scored, s, sp, n, np_, [majority(seq)],
                               [float(np.nanmean(chroma[:, i])) / palette_chroma])
    return out


@dataclass
class Commitment:
    """How decided and how varied the free choices are, over videos and seeds."""

    chroma_ratio: float  # mean over instances of their mean chroma / the palette's
    entropy: float  # of the choices, / log(palette size): 0 = always the same, 1 = uniform
    grey_share: float  # choices that are grey
    commitment: float  # min(chroma_ratio, 1) * entropy
    seed_agreement: float | None = None  # (video, shape) pairs choosing alike under every seed
    counts: dict[str, int] = field(default_factory=dict)


def commitment_scores(choices: Sequence[str | None], chroma_ratios: Sequence[float], palette_size: int = 8,
                      per_seed: Sequence[Sequence[str | None]] | None = None) -> Commitment:
    """Commitment of pooled choices (see the module docstring).

    ``per_seed``: the same (video, shape) choices listed once per sampling seed, in the same
    order, for the seed agreement (how often a second seed picks the same colour).
    """
    if palette_size < 2:
        raise ValueError(f"palette_size must be >= 2, got {palette_size}")
    made = [c for c in choices if c is not None]
    counts = Counter(made)
    coloured = Counter({c: n for c, n in counts.items() if c != GREY})  # grey is no choice of colour
    if coloured:
        p = np.array(list(coloured.values()), dtype=np.float64) / sum(coloured.values())
        entropy = float(-(p * np.log(p)).sum() / np.log(palette_size))
    else:
        entropy = 0.0 if made else float("nan")
    ratios = [r for r in chroma_ratios if np.isfinite(r)]
    chroma = float(np.mean(ratios)) if ratios else float("nan")
    agreement = None
    if per_seed is not None and len(per_seed) >= 2:
        rows = list(zip(*per_seed))
        agreement = float(np.mean([len(set(r)) == 1 for r in rows])) if rows else None
    return Commitment(chroma, entropy, _rate(counts.get(GREY, 0), len(made)), min(chroma, 1.0) * entropy,
                      agreement, dict(counts))
