"""A torch ``Dataset`` of synthetic videos generated on the fly (nothing is stored).

Item ``k`` is ``generate_video(seed_offset + k, ...)``, returned in the same dictionary format
as the manifest datasets: ``{"pixel_values": (F, 3, H, W) float32 in [-1, 1] RGB,
"caption": str, "index": int}``.

``with_masks=True`` adds ``"shape_mask"`` ``(F, H, W)`` float32 (1 on any shape's visible
pixels), ``"instance_masks"`` ``(F, max shapes, H, W)`` (zero for absent slots) and
``"instance_words"`` (``"red star;blue circle"``), for the shape-weighted and grounding losses.
``free_fraction`` mixes in the free-colour split (:mod:`.naming`): item ``k`` is a free video
(some colours left unnamed in its caption) with that probability, drawn from its seed.
``colors_named`` sets the mode of every item instead ("all", "some", "none").
``twins=True`` adds the clip's colour twin, ``"twin_pixel_values"`` / ``"twin_caption"`` (and
``"twin_instance_words"`` with masks): the same grey clip with :func:`twin_colors` and the caption
to match, so a training step can contrast the two. Everything else for evaluation comes from
:meth:`SyntheticVideoDataset.video`.
Disjoint ``seed_offset`` ranges give disjoint train / validation / test splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from .naming import is_free_item
from .palette import BACKGROUND_PALETTE, SHAPE_PALETTE, Palette
from .video import SyntheticVideo, _shape_count_range, generate_video, resolve_num_frames, swap_caption_colors

__all__ = ["SyntheticVideoDataset", "instance_words", "to_pixel_values", "twin_colors"]


def to_pixel_values(rgb: np.ndarray) -> torch.Tensor:
    """``(F, H, W, 3)`` uint8 -> ``(F, 3, H, W)`` float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(torch.float32) / 127.5 - 1.0
    return rearrange(x, "f h w c -> f c h w").contiguous()


class SyntheticVideoDataset(Dataset):
    """``num_videos`` procedural videos with seeds ``seed_offset .. seed_offset + num_videos - 1``."""

    def __init__(
        self,
        num_videos: int,
        seed_offset: int = 0,
        num_frames: int | None = None,
        size: int = 64,
        num_shapes: int | tuple[int, int] = (1, 3),
        long: bool = False,
        palette: Palette = SHAPE_PALETTE,
        background_palette: Palette = BACKGROUND_PALETTE,
        with_masks: bool = False,
        twins: bool = False,
        free_fraction: float = 0.0,
        colors_named: str = "all",
    ) -> None:
        if isinstance(num_videos, bool) or not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
            raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
        if isinstance(seed_offset, bool) or not isinstance(seed_offset, (int, np.integer)) or seed_offset < 0:
            raise ValueError(f"seed_offset must be a non-negative integer, got {seed_offset!r}")
        self.num_videos = int(num_videos)
        self.seed_offset = int(seed_offset)
        self.num_frames = resolve_num_frames(num_frames, long)
        self.size = size
        self.num_shapes = num_shapes
        self.long = long
        self.palette = palette
        self.background_palette = background_palette
        self.with_masks = bool(with_masks)
        self.twins = bool(twins)
        is_free_item(0, free_fraction)  # validates it
        if free_fraction and colors_named != "all":
            raise ValueError("give free_fraction (a named/free mix) or colors_named (one mode), not both")
        self.free_fraction = float(free_fraction)
        self.colors_named = colors_named
        # Validate the remaining arguments now (one cheap frame), not in a loader worker later.
        generate_video(self.seed_offset, 1, size, num_shapes, palette, long, background_palette=background_palette,
                       colors_named=colors_named)

    def __len__(self) -> int:
        return self.num_videos

    def seed(self, index: int) -> int:
        """The generator seed of item ``index`` (negative indices count from the end)."""
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"index must be in [-{self.num_videos}, {self.num_videos - 1}], got {index}")
        return self.seed_offset + (index % self.num_videos)

    def video(self, index: int, instance_colors: list[str] | None = None) -> SyntheticVideo:
        """The full :class:`SyntheticVideo` (masks, colours, grey) of item ``index`` (optionally recoloured)."""
        return generate_video(
            self.seed(index),
            num_frames=self.num_frames,
            size=self.size,
            num_shapes=self.num_shapes,
            palette=self.palette,
            long=self.long,
            background_palette=self.background_palette,
            instance_colors=instance_colors,
            colors_named=self.naming_mode(index),
        )

    def naming_mode(self, index: int) -> str:
        """The naming mode of item ``index``: ``colors_named``, or the named/free draw of its seed."""
        if self.free_fraction:
            return "some" if is_free_item(self.seed(index), self.free_fraction) else "all"
        return self.colors_named

    def twin(self, index: int) -> SyntheticVideo:
        """Item ``index`` re-rendered with its :func:`twin_colors` (same grey clip, other caption)."""
        return self.video(index, twin_colors(self.video(index), self.palette))

    def __getitem__(self, index: int) -> dict[str, Any]:
        v = self.video(index)
        item = {"pixel_values": to_pixel_values(v.rgb), "caption": v.caption, "index": int(index)}
        if self.with_masks:
            item.update(mask_items(v, self.max_shapes))
        if self.twins:
            t = self.video(index, twin_colors(v, self.palette))
            item["twin_pixel_values"], item["twin_caption"] = to_pixel_values(t.rgb), t.caption
            if self.with_masks:
                item["twin_instance_words"] = instance_words(t)
        return item

    @property
    def max_shapes(self) -> int:
        """The most shapes a video of this set can have (the instance-mask slots)."""
        return _shape_count_range(self.num_shapes, self.palette)[1]


def instance_words(video: SyntheticVideo) -> str:
    """Each instance's caption words, "colour noun" (or the noun alone when its colour is unnamed)
    joined by ";" (a string, so batches collate)."""
    return ";".join(f"{c} {s}" if k else s for c, s, k in zip(video.instance_colors, video.shapes, video.named))


def mask_items(video: SyntheticVideo, slots: int) -> dict[str, Any]:
    """The union shape mask, the per-instance masks padded to `slots`, and the instances' words."""
    masks = np.zeros((video.num_frames, slots, video.size, video.size), dtype=np.float32)
    masks[:, :video.num_instances] = video.masks
    return {"shape_mask": torch.from_numpy(video.masks.any(axis=1).astype(np.float32)),
            "instance_masks": torch.from_numpy(masks), "instance_words": instance_words(video)}


def twin_colors(video: SyntheticVideo, palette: Palette = SHAPE_PALETTE) -> list[str]:
    """The colours of a video's twin: the first two shapes' colours exchanged, or for a single shape
    another palette colour (drawn from the video's seed, so the twin is deterministic).

    Both leave the grey clip unchanged (the palette is isoluminant), so the twin differs from the
    original only where the sentence says it does: the pair isolates the binding of words to shapes.
    """
    if video.num_instances >= 2:
        return swap_caption_colors(video, 0, 1)[1]
    others = [c for c in palette.names if c != video.instance_colors[0]]
    return [others[int(np.random.default_rng([video.seed, 1]).integers(len(others)))]]
