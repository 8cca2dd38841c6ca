"""Procedural language-colorization videos: the scene generator and its result type.

Shapes of isoluminant colours move over a textured background of another lightness. The grey
(Lab-L) video shows where the shapes are but not their colours; the caption names them. All
randomness comes from one ``numpy.random.Generator`` seeded with ``seed``, in a fixed draw
order that never depends on colours, so ``generate_video(seed, instance_colors=...)`` re-draws
the *same* video with other colours (and therefore the same grey video).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .background import Texture, sample_texture
from .captions import CaptionLayout, make_caption, sample_layout
from .motion import Trajectory, sample_trajectory
from .palette import BACKGROUND_PALETTE, MAX_TEXTURE_AMPLITUDE, SHAPE_PALETTE, Palette, lab_to_srgb_uint8
from .naming import Naming, draw_naming
from .luminance import grey_level, grey_of_uint8, lock_grey
from .shapes import SHAPE_NAMES, coverage

__all__ = [
    "SyntheticVideo",
    "generate_video",
    "swap_caption_colors",
    "caption_with_colors",
    "resolve_num_frames",
    "MASK_THRESHOLD",
    "SHORT_FRAMES",
    "LONG_FRAMES",
    "MIN_SIZE",
    "MAX_SIZE",
    "MAX_FRAMES",
]

#: A pixel belongs to an instance's mask when at least this fraction of it shows that instance.
MASK_THRESHOLD = 0.5
#: Default clip lengths for short and long mode.
SHORT_FRAMES, LONG_FRAMES = 8, 256
MIN_SIZE, MAX_SIZE, MAX_FRAMES = 16, 1024, 4096


@dataclass
class SyntheticVideo:
    """One generated video with its ground truth.

    ``rgb`` and ``grey`` are ``(T, H, W, 3)`` uint8 (``grey`` is the Lab-L grey of ``rgb``,
    :func:`lc4.color.to_grey`); ``masks`` is ``(T, n, H, W)`` bool, the visible pixels of each
    instance after occlusion (instance ``n-1`` is in front). Instance ``i`` is a
    ``instance_colors[i]`` ``shapes[i]``. ``named[i]`` false: the caption leaves that colour to
    the model (the free-colour split, :mod:`.naming`); the same for ``background_named``.
    """

    rgb: np.ndarray
    grey: np.ndarray
    masks: np.ndarray
    instance_colors: list[str]
    background_color: str
    shapes: list[str]
    caption: str
    seed: int
    caption_layout: CaptionLayout = field(default_factory=lambda: CaptionLayout(0, ()))
    texture: str = ""
    long: bool = False
    named: list[bool] = field(default_factory=list)  # empty = every shape named
    background_named: bool = True

    def __post_init__(self) -> None:
        if not self.named:
            self.named = [True] * len(self.shapes)

    @property
    def naming(self) -> Naming:
        return Naming(tuple(self.named), self.background_named)

    @property
    def unnamed(self) -> list[int]:
        """Indices of the shapes whose colour the caption does not name."""
        return [i for i, k in enumerate(self.named) if not k]

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def size(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def num_instances(self) -> int:
        return len(self.shapes)


def resolve_num_frames(num_frames: int | None, long: bool) -> int:
    """``num_frames`` or the mode's default, checked against ``[1, MAX_FRAMES]``."""
    if num_frames is None:
        return LONG_FRAMES if long else SHORT_FRAMES
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer, got {num_frames!r}")
    if not 1 <= num_frames <= MAX_FRAMES:
        raise ValueError(f"num_frames must be in [1, {MAX_FRAMES}], got {num_frames}")
    return int(num_frames)


def _shape_count_range(num_shapes: int | tuple[int, int], palette: Palette) -> tuple[int, int]:
    pair = (num_shapes, num_shapes) if isinstance(num_shapes, (int, np.integer)) else tuple(num_shapes)
    limit = min(len(SHAPE_NAMES), len(palette))
    if len(pair) != 2 or not all(isinstance(k, (int, np.integer)) for k in pair):
        raise ValueError(f"num_shapes must be an integer or a (min, max) pair of integers, got {num_shapes!r}")
    lo, hi = pair
    if not 1 <= lo <= hi <= limit:
        raise ValueError(
            f"num_shapes must satisfy 1 <= min <= max <= {limit} (distinct shapes and colours), got {num_shapes}"
        )
    return int(lo), int(hi)


def _check_colors(colors: Sequence[str], palette: Palette, n: int, what: str) -> list[str]:
    colors = list(colors)
    if len(colors) != n:
        raise ValueError(f"{what}: this seed has {n} instance(s), got {len(colors)} colour(s)")
    for c in colors:
        if c not in palette:
            raise ValueError(f"{what}: unknown colour {c!r}; palette: {', '.join(palette.names)}")
    return colors


def _render(
    trajectories: Sequence[Trajectory],
    shapes: Sequence[str],
    shape_lab: np.ndarray,
    background_lab: np.ndarray,
    texture: Texture,
    num_frames: int,
    size: int,
    supersample: int,
    design_l: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Composite back to front in CIELAB (so edges blend L independently of a, b), then sRGB.

    With ``design_l = (shape L, background L)`` the same composite is made of the design
    lightness alone, and each frame's 8-bit grey is locked to it (:func:`lock_grey`).
    """
    n = len(shapes)
    rgb = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, n, size, size), dtype=bool)
    for t in range(num_frames):
        tex = texture(size, size, t)
        lab = np.empty((size, size, 3), dtype=np.float64)
        lab[..., 0] = background_lab[0] + tex
        lab[..., 1:] = background_lab[1:]
        light = None if design_l is None else design_l[1] + tex
        alphas = [coverage(s, tr.pose(t), size, size, supersample) for s, tr in zip(shapes, trajectories)]
        for i in range(n):
            a = alphas[i].astype(np.float64)
            lab = lab * (1.0 - a[..., None]) + shape_lab[i] * a[..., None]
            if light is not None:
                light = light * (1.0 - a) + design_l[0] * a
        # Visible share of instance i: its coverage times what every instance in front leaves.
        # A pixel half covered by each of two instances goes to the front one (masks are disjoint).
        in_front = np.ones((size, size), dtype=np.float32)
        claimed = np.zeros((size, size), dtype=bool)
        for i in reversed(range(n)):
            masks[t, i] = (alphas[i] * in_front >= MASK_THRESHOLD) & ~claimed
            claimed |= masks[t, i]
            in_front = in_front * (1.0 - alphas[i])
        frame = lab_to_srgb_uint8(lab)
        rgb[t] = frame if light is None else lock_grey(frame, grey_level(light))
    return rgb, masks


def generate_video(
    seed: int,
    num_frames: int | None = None,
    size: int = 64,
    num_shapes: int | tuple[int, int] = (1, 3),
    palette: Palette = SHAPE_PALETTE,
    long: bool = False,
    *,
    background_palette: Palette = BACKGROUND_PALETTE,
    instance_colors: Sequence[str] | None = None,
    background_color: str | None = None,
    supersample: int = 4,
    colors_named: str = "all",
) -> SyntheticVideo:
    """Generate one video, fully determined by its arguments.

    ``num_frames`` defaults to 8 (or 256 with ``long=True``: slow motion over the whole video,
    shapes leave and come back). ``num_shapes`` is a count or an inclusive ``(min, max)``.
    ``instance_colors`` / ``background_color`` override the drawn colours without changing
    anything else (same shapes, motion, texture and caption layout). ``colors_named`` ("all",
    "some", "none", :func:`~.naming.draw_naming`) picks which colours the caption names; it
    changes the caption only, never the pixels.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    T = resolve_num_frames(num_frames, long)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be in [1, 8], got {supersample}")
    lo, hi = _shape_count_range(num_shapes, palette)

    rng = np.random.default_rng(int(seed))
    n = int(rng.integers(lo, hi + 1))
    shapes = [SHAPE_NAMES[i] for i in rng.permutation(len(SHAPE_NAMES))[:n]]
    colors = [palette.names[i] for i in rng.permutation(len(palette))[:n]]
    background = background_palette.names[int(rng.integers(len(background_palette)))]
    texture = sample_texture(rng, size, long, MAX_TEXTURE_AMPLITUDE)
    cells = rng.permutation(9)[:n]
    trajectories = [sample_trajectory(rng, size, T, long, int(c)) for c in cells]
    layout = sample_layout(rng, n)
    naming = draw_naming(int(seed), n, colors_named)

    if instance_colors is not None:
        colors = _check_colors(instance_colors, palette, n, "instance_colors")
    if background_color is not None:
        background = _check_colors([background_color], background_palette, 1, "background_color")[0]

    shape_lab = np.array([palette[c].lab for c in colors], dtype=np.float64)
    locked = palette.lightness is not None and background_palette.lightness is not None
    design_l = (palette.lightness, background_palette.lightness) if locked else None
    rgb, masks = _render(
        trajectories, shapes, shape_lab, np.array(background_palette[background].lab), texture, T, size, supersample,
        design_l,
    )
    return SyntheticVideo(
        rgb=rgb,
        grey=np.repeat(grey_of_uint8(rgb)[..., None], 3, axis=-1),  # == lc4.color.to_grey(rgb)
        masks=masks,
        instance_colors=colors,
        background_color=background,
        shapes=shapes,
        caption=make_caption(shapes, colors, background, layout, naming.shapes, naming.background),
        seed=int(seed),
        caption_layout=layout,
        texture=texture.kind,
        long=bool(long),
        named=list(naming.shapes),
        background_named=naming.background,
    )


def caption_with_colors(video: SyntheticVideo, instance_colors: Sequence[str], background_color: str | None = None) -> str:
    """The video's caption (same template and word order) with other colours substituted."""
    if len(instance_colors) != video.num_instances:
        raise ValueError(f"video has {video.num_instances} instance(s), got {len(instance_colors)} colour(s)")
    bg = video.background_color if background_color is None else background_color
    return make_caption(video.shapes, list(instance_colors), bg, video.caption_layout, video.named,
                        video.background_named)


def swap_caption_colors(video: SyntheticVideo, i: int, j: int) -> tuple[str, list[str]]:
    """Caption with the colours of instances ``i`` and ``j`` exchanged, and the colours a model
    that follows the sentence should now give each instance (for the "follows the sentence" test)."""
    n = video.num_instances
    for k in (i, j):
        if not 0 <= k < n:
            raise ValueError(f"instance index must be in [0, {n - 1}], got {k}")
    if i == j:
        raise ValueError(f"swap needs two different instances, got i = j = {i}")
    colors = list(video.instance_colors)
    colors[i], colors[j] = colors[j], colors[i]
    return caption_with_colors(video, colors), colors
