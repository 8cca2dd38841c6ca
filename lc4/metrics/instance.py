"""Instance colour accuracy and hue stability, for videos with ground-truth instance masks.

These measure what the synthetic benchmark (:mod:`lc4.data.synthetic`) is built to test:
whether a colorizer gives each object the colour its caption names, and keeps it.

* :func:`instance_color_accuracy` – for every instance and frame where the (eroded) mask has
  at least ``min_pixels`` pixels, the mean predicted CIELAB (a, b) inside the mask is
  classified as the palette colour nearest in the ab plane; accuracy is the fraction of these
  (instance, frame) pairs classified as the expected colour. A random guess scores
  ``1 / len(palette)``. Lightness is ignored, so predictions are judged on chroma only.
* :func:`hue_spread` – per instance, the circular standard deviation (degrees) over frames of
  the hue angle of its mean (a, b); averaged over instances. 0 means the hue never drifts.

Masks are eroded by ``erode`` pixels first (the frame border counts as outside) so anti-aliased and
bleeding edges do not dilute the interior colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.ndimage import binary_erosion

from lc4.color import rgb_to_lab

from ._video import as_uint8_video

__all__ = ["InstanceColorScore", "InstanceColorResult", "instance_color_accuracy", "hue_spread", "instance_mean_ab"]


@dataclass(frozen=True)
class InstanceColorScore:
    """One instance's result: ``predicted[t]`` is the nearest palette name, or None if frame t was not scored."""

    index: int
    expected: str
    predicted: list[str | None]
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@dataclass(frozen=True)
class InstanceColorResult:
    """Accuracy over all scored (instance, frame) pairs, with the counts needed to pool videos."""

    accuracy: float
    correct: int
    total: int
    chance: float
    instances: list[InstanceColorScore]


def _palette_table(palette: Any) -> tuple[list[str], np.ndarray]:
    """Names and ``(n, 2)`` ab of a :class:`~lc4.data.synthetic.palette.Palette` or ``{name: (L, a, b)}``."""
    if palette is None:
        from lc4.data.synthetic.palette import SHAPE_PALETTE

        palette = SHAPE_PALETTE
    if isinstance(palette, Mapping):
        names = list(palette.keys())
        lab = np.array([np.asarray(v, dtype=np.float64) for v in palette.values()])
    else:
        names, lab = list(palette.names), np.asarray(palette.lab, dtype=np.float64)
    if len(names) < 1 or lab.shape != (len(names), 3):
        raise ValueError(f"palette must give one (L, a, b) triple per colour; got {len(names)} names, values of shape {lab.shape}")
    return names, lab[:, 1:]


def _check_masks(video: np.ndarray, masks: Any) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.dtype != np.bool_:
        raise ValueError(f"masks must be a bool array, got dtype {masks.dtype}")
    t, h, w, _ = video.shape
    if masks.ndim != 4 or masks.shape[0] != t or masks.shape[2:] != (h, w):
        raise ValueError(f"masks must have shape (T, n, H, W) = ({t}, n, {h}, {w}) to match the video; got {masks.shape}")
    return masks


def instance_mean_ab(pred_rgb: Any, masks: Any, *, min_pixels: int = 10, erode: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted CIELAB (a, b) per frame and instance: ``(T, n, 2)`` and a ``(T, n)`` bool of
    which entries had at least ``min_pixels`` pixels in the eroded mask (others are NaN)."""
    video = as_uint8_video(pred_rgb, "pred_rgb")
    masks = _check_masks(video, masks)
    if min_pixels < 1:
        raise ValueError(f"min_pixels must be >= 1, got {min_pixels}")
    if erode < 0:
        raise ValueError(f"erode must be >= 0, got {erode}")
    if erode:
        structure = np.zeros((1, 1, 3, 3), dtype=bool)
        structure[0, 0] = True
        masks = binary_erosion(masks, structure=structure, iterations=erode, border_value=0)
    counts = masks.sum(axis=(2, 3))
    sums = np.zeros(masks.shape[:2] + (2,), dtype=np.float64)
    for t in range(video.shape[0]):
        if counts[t].any():
            ab = rgb_to_lab(video[t])[..., 1:]
            sums[t] = np.einsum("nhw,hwc->nc", masks[t].astype(np.float64), ab)
    valid = counts >= min_pixels
    mean = np.full_like(sums, np.nan)
    mean[valid] = sums[valid] / counts[valid][:, None]
    return mean, valid


def instance_color_accuracy(
    pred_rgb: Any,
    masks: Any,
    instance_colors: Sequence[str],
    palette: Any = None,
    *,
    min_pixels: int = 10,
    erode: int = 1,
    return_details: bool = False,
) -> float | InstanceColorResult:
    """Fraction of (instance, frame) pairs whose mean predicted ab is nearest the expected palette colour.

    ``pred_rgb`` is ``(T, H, W, 3)`` (uint8, or float in [0, 1]); ``masks`` ``(T, n, H, W)`` bool;
    ``instance_colors[i]`` the palette name instance ``i`` should have; ``palette`` defaults to
    the synthetic benchmark's shape palette. Ties (e.g. an exactly grey prediction, when several
    colours are equally near) go to the earlier palette colour. Returns NaN when no pair has
    ``min_pixels`` pixels; pool videos by summing ``correct`` and ``total`` of the details.
    """
    names, ab = _palette_table(palette)
    colors = list(instance_colors)
    unknown = [c for c in colors if c not in names]
    if unknown:
        raise ValueError(f"instance colours {unknown} are not in the palette {names}")
    mean, valid = instance_mean_ab(pred_rgb, masks, min_pixels=min_pixels, erode=erode)
    if len(colors) != mean.shape[1]:
        raise ValueError(f"masks have {mean.shape[1]} instance(s) but {len(colors)} colour(s) were given")
    dist = np.linalg.norm(np.nan_to_num(mean)[:, :, None, :] - ab[None, None], axis=-1)  # (T, n, P)
    nearest = dist.argmin(axis=-1)
    scores = []
    for i, c in enumerate(colors):
        expected = names.index(c)
        pred = [names[nearest[t, i]] if valid[t, i] else None for t in range(mean.shape[0])]
        ok = int((valid[:, i] & (nearest[:, i] == expected)).sum())
        scores.append(InstanceColorScore(i, c, pred, ok, int(valid[:, i].sum())))
    correct, total = sum(s.correct for s in scores), sum(s.total for s in scores)
    acc = correct / total if total else float("nan")
    if return_details:
        return InstanceColorResult(acc, correct, total, 1.0 / len(names), scores)
    return acc


def hue_spread(pred_rgb: Any, masks: Any, *, min_pixels: int = 10, erode: int = 1) -> float:
    """Mean over instances of the circular std (degrees) of the per-frame mean hue angle.

    Only instances scored in at least two frames count; NaN when there are none. The hue of a
    near-grey prediction is noise, so read this next to the accuracy (a grey output is not
    "consistent").
    """
    mean, valid = instance_mean_ab(pred_rgb, masks, min_pixels=min_pixels, erode=erode)
    spreads = []
    for i in range(mean.shape[1]):
        ab = mean[valid[:, i], i]
        if len(ab) < 2:
            continue
        angle = np.arctan2(ab[:, 1], ab[:, 0])
        r = min(float(np.abs(np.exp(1j * angle).mean())), 1.0)
        spreads.append(float(np.degrees(np.sqrt(-2.0 * np.log(r)))) if r > 0 else float("inf"))
    return float(np.mean(spreads)) if spreads else float("nan")
