"""Which colours a caption names: the named benchmark, and the free-colour split.

In the named benchmark every shape's colour is in the sentence, so each frame can be coloured
right on its own and no temporal module is needed. In the **free-colour split** some shapes'
colours (and sometimes the background's) are left out ("a cyan cross and a ring on a maroon
background"): the ground truth still paints them a palette colour drawn at random per video, so a
model learns a distribution, and a good video model must *choose* one colour and keep it over the
clip (TDA) and across clips (CCF). That choice is what the free-colour metrics score
(:mod:`lc4.metrics.free_color`).

Modes (``colors_named``):

* ``"all"``  – every colour named (the original benchmark);
* ``"some"`` – a free video: each shape unnamed with probability 1/2, at least one unnamed;
  the background unnamed with probability 1/2;
* ``"none"`` – no shape and no background colour named.

The draws come from their own random stream (``[seed, NAMING_STREAM]``), so naming never
changes a video's shapes, motion or colours: video ``seed`` in every mode has the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COLOR_NAMING_MODES", "Naming", "draw_naming", "is_free_item"]

COLOR_NAMING_MODES = ("all", "some", "none")
NAMING_STREAM = 7  # second word of the naming generator's seed
MIX_STREAM = 8  # ... and of the named/free draw of a training item


@dataclass(frozen=True)
class Naming:
    """Per shape, whether the caption names its colour; and whether it names the background's."""

    shapes: tuple[bool, ...]
    background: bool = True

    @property
    def free(self) -> bool:
        """True when the caption leaves at least one colour to the model."""
        return not (all(self.shapes) and self.background)


def draw_naming(seed: int, num_instances: int, colors_named: str = "all") -> Naming:
    """The naming of video ``seed`` with ``num_instances`` shapes in mode ``colors_named``."""
    if colors_named not in COLOR_NAMING_MODES:
        raise ValueError(f"colors_named must be one of {', '.join(COLOR_NAMING_MODES)}, got {colors_named!r}")
    if colors_named == "all":
        return Naming((True,) * num_instances, True)
    if colors_named == "none":
        return Naming((False,) * num_instances, False)
    rng = np.random.default_rng([int(seed), NAMING_STREAM])
    named = rng.random(num_instances) < 0.5
    named[int(rng.integers(num_instances))] = False  # at least one shape is the model's choice
    return Naming(tuple(bool(k) for k in named), bool(rng.random() < 0.5))


def is_free_item(seed: int, free_fraction: float) -> bool:
    """Whether training video ``seed`` is drawn from the free-colour split (probability ``free_fraction``)."""
    if not 0.0 <= free_fraction <= 1.0:
        raise ValueError(f"free_fraction must be in [0, 1], got {free_fraction}")
    return free_fraction > 0 and bool(np.random.default_rng([int(seed), MIX_STREAM]).random() < free_fraction)
