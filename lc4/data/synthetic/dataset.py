"""A torch ``Dataset`` of synthetic videos generated on the fly (nothing is stored).

Item ``k`` is ``generate_video(seed_offset + k, ...)``, returned in the same dictionary format
as the manifest datasets: ``{"pixel_values": (F, 3, H, W) float32 in [-1, 1] RGB,
"caption": str, "index": int}``, plus ``"shape_mask"`` ``(F, H, W)`` float32 (1 on any shape's
visible pixels) with ``with_masks=True``, for a shape-weighted training loss. Per-instance masks
and colours for evaluation come from :meth:`SyntheticVideoDataset.video`.
Disjoint ``seed_offset`` ranges give disjoint train / validation / test splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from .palette import BACKGROUND_PALETTE, SHAPE_PALETTE, Palette
from .video import SyntheticVideo, generate_video, resolve_num_frames

__all__ = ["SyntheticVideoDataset", "to_pixel_values"]


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
        # Validate the remaining arguments now (one cheap frame), not in a loader worker later.
        generate_video(self.seed_offset, 1, size, num_shapes, palette, long, background_palette=background_palette)

    def __len__(self) -> int:
        return self.num_videos

    def seed(self, index: int) -> int:
        """The generator seed of item ``index`` (negative indices count from the end)."""
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"index must be in [-{self.num_videos}, {self.num_videos - 1}], got {index}")
        return self.seed_offset + (index % self.num_videos)

    def video(self, index: int) -> SyntheticVideo:
        """The full :class:`SyntheticVideo` (masks, colours, grey) of item ``index``."""
        return generate_video(
            self.seed(index),
            num_frames=self.num_frames,
            size=self.size,
            num_shapes=self.num_shapes,
            palette=self.palette,
            long=self.long,
            background_palette=self.background_palette,
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        v = self.video(index)
        item = {"pixel_values": to_pixel_values(v.rgb), "caption": v.caption, "index": int(index)}
        if self.with_masks:
            item["shape_mask"] = torch.from_numpy(v.masks.any(axis=1).astype(np.float32))
        return item
