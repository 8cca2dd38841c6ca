"""Procedural language-colorization benchmark: isoluminant shapes whose colours only the caption names.

See ``docs/synthetic.md``. Main entry points: :func:`generate_video`,
:class:`SyntheticVideoDataset`, :func:`write_dataset`, and the metrics in
:mod:`lc4.metrics.instance`.
"""

from .captions import CAPTION_TEMPLATES, CaptionLayout, make_caption
from .dataset import SyntheticVideoDataset, instance_words, to_pixel_values, twin_colors
from .palette import (
    BACKGROUND_L,
    BACKGROUND_PALETTE,
    MAX_TEXTURE_AMPLITUDE,
    SHAPE_L,
    SHAPE_PALETTE,
    NamedColor,
    Palette,
    in_srgb_gamut,
)
from .shapes import SHAPE_NAMES
from .video import (
    LONG_FRAMES,
    SHORT_FRAMES,
    SyntheticVideo,
    caption_with_colors,
    generate_video,
    swap_caption_colors,
)
from .writer import load_masks, read_meta, write_dataset

__all__ = [
    "SyntheticVideo",
    "generate_video",
    "swap_caption_colors",
    "caption_with_colors",
    "SyntheticVideoDataset",
    "to_pixel_values",
    "instance_words",
    "twin_colors",
    "write_dataset",
    "read_meta",
    "load_masks",
    "Palette",
    "NamedColor",
    "SHAPE_PALETTE",
    "BACKGROUND_PALETTE",
    "SHAPE_L",
    "BACKGROUND_L",
    "MAX_TEXTURE_AMPLITUDE",
    "in_srgb_gamut",
    "SHAPE_NAMES",
    "CAPTION_TEMPLATES",
    "CaptionLayout",
    "make_caption",
    "SHORT_FRAMES",
    "LONG_FRAMES",
]
