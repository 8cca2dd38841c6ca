"""Captions that name the shapes' colours and the background's, or leave some of them unnamed.

A caption is fully determined by a :class:`CaptionLayout` (template, the order shapes are
mentioned in, and how they are joined) plus the shape names and colour names, so the same
sentence can be re-rendered with other colours (see ``swap_caption_colors``). In the free-colour
split (:mod:`.naming`) a shape whose colour is left unnamed is mentioned by its noun alone
("a ring") and an unnamed background is "a background": the colour is then the model's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["CAPTION_TEMPLATES", "JOINERS", "CaptionLayout", "sample_layout", "make_caption", "with_article"]

#: Sentence templates; ``{objects}`` is the shape list, ``{background}`` e.g. "a navy background".
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{objects} on {background}",
    "on {background}, there {be} {objects}",
    "{background} with {objects}",
    "{objects} moving over {background}",
    "a video of {objects} in front of {background}",
    "{objects} against {background}",
)
#: How the shape phrases are joined: "a red star and a blue circle" or "a red star next to a blue circle"
#: (the latter only for exactly two shapes).
JOINERS: tuple[str, ...] = ("and", "next to")


def with_article(phrase: str) -> str:
    """Prefix "a" or "an" (by the first letter's sound, good enough for colour words)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


@dataclass(frozen=True)
class CaptionLayout:
    """How to phrase a caption: template index, mention order of instances, joiner index."""

    template: int
    order: tuple[int, ...]
    joiner: int = 0


def sample_layout(rng: np.random.Generator, num_instances: int) -> CaptionLayout:
    """Draw a template, a mention order and a joiner (fixed number of draws for a given count)."""
    template = int(rng.integers(len(CAPTION_TEMPLATES)))
    order = tuple(int(i) for i in rng.permutation(num_instances))
    joiner = int(rng.integers(len(JOINERS)))
    return CaptionLayout(template, order, joiner if num_instances == 2 else 0)


def _join(phrases: Sequence[str], joiner: str) -> str:
    if len(phrases) == 1:
        return phrases[0]
    if joiner == "next to" and len(phrases) == 2:
        return f"{phrases[0]} next to {phrases[1]}"
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def make_caption(shapes: Sequence[str], colors: Sequence[str], background: str, layout: CaptionLayout,
                 named: Sequence[bool] | None = None, background_named: bool = True) -> str:
    """Render the caption for instances ``shapes`` with ``colors`` on a ``background`` colour.

    ``named[i]`` false leaves shape i's colour out of the sentence; ``background_named`` false
    says "a background" (both default to naming every colour).
    """
    if len(shapes) != len(colors):
        raise ValueError(f"need one colour per shape: {len(shapes)} shapes, {len(colors)} colours")
    named = [True] * len(shapes) if named is None else [bool(k) for k in named]
    if len(named) != len(shapes):
        raise ValueError(f"need one naming flag per shape: {len(shapes)} shapes, {len(named)} flags")
    if sorted(layout.order) != list(range(len(shapes))):
        raise ValueError(f"layout order {layout.order} is not a permutation of {len(shapes)} instances")
    if not 0 <= layout.template < len(CAPTION_TEMPLATES):
        raise ValueError(f"template index must be in [0, {len(CAPTION_TEMPLATES) - 1}], got {layout.template}")
    phrases = [with_article(f"{colors[i]} {shapes[i]}" if named[i] else shapes[i]) for i in layout.order]
    joiner = JOINERS[layout.joiner]
    be = "is" if len(shapes) == 1 or (joiner == "next to" and len(shapes) == 2) else "are"
    text = CAPTION_TEMPLATES[layout.template].format(
        objects=_join(phrases, joiner), background=with_article(f"{background} background" if background_named
                                                               else "background"), be=be
    )
    return text
