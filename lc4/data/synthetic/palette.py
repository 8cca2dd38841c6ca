"""Isoluminant colour palettes for the synthetic benchmark.

Every shape colour has the same CIELAB lightness (L = 60) and every background colour shares
another one (L = 35), so a Lab-L grey video carries no information about which colour a
shape has: only the caption does. Colours are specified as (L, chroma, hue angle) in CIELAB,
then snapped to the nearest 8-bit sRGB triple whose own L is within ``SNAP_L_TOL`` of the
target and whose 8-bit Lab-L grey equals the target's, so the rendered uint8 pixels, not just
the float design values, are isoluminant. Conversions use :mod:`skimage.color` (the reference
``lc4.color`` agrees with to 1e-4).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from .luminance import grey_level, grey_of_uint8

__all__ = [
    "NamedColor",
    "Palette",
    "SHAPE_L",
    "BACKGROUND_L",
    "SHAPE_PALETTE",
    "BACKGROUND_PALETTE",
    "MAX_TEXTURE_AMPLITUDE",
    "in_srgb_gamut",
    "snap_to_uint8",
    "lab_to_srgb_uint8",
]

#: CIELAB lightness shared by all shape colours.
SHAPE_L = 60.0
#: CIELAB lightness shared by all background colours (far from SHAPE_L: shapes stay visible in grey).
BACKGROUND_L = 35.0
#: Largest luminance texture amplitude (L units) the background may carry; the background
#: palette is checked to stay inside sRGB over BACKGROUND_L +/- this.
MAX_TEXTURE_AMPLITUDE = 5.0
#: Largest |L - target| accepted when snapping a design colour to 8-bit sRGB.
SNAP_L_TOL = 0.1


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # skimage warns when it clips out-of-gamut values
        warnings.simplefilter("ignore")
        return lab2rgb(np.asarray(lab, dtype=np.float64))


def lab_to_srgb_uint8(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``(..., 3)`` -> 8-bit sRGB, clipped to the gamut and rounded."""
    return np.round(np.clip(_lab2rgb(lab), 0.0, 1.0) * 255.0).astype(np.uint8)


def in_srgb_gamut(lab: Sequence[float] | np.ndarray, tol: float = 1e-3) -> np.ndarray | bool:
    """True where a CIELAB colour is inside the sRGB gamut (the sRGB round trip is lossless).

    ``lab`` is ``(..., 3)``; the answer has the leading shape (a bool for one colour).
    """
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1:] != (3,):
        raise ValueError(f"lab must have 3 values on its last axis, got shape {lab.shape}")
    back = rgb2lab(_lab2rgb(lab.reshape(-1, 3))).reshape(lab.shape)
    ok = np.abs(back - lab).max(axis=-1) <= tol
    return bool(ok) if ok.ndim == 0 else ok


def snap_to_uint8(lab: Sequence[float], l_tol: float = SNAP_L_TOL, same_grey: bool = True) -> tuple[int, int, int]:
    """The 8-bit sRGB triple nearest to ``lab`` (in ΔE76) among those whose L is within ``l_tol``
    (and, with ``same_grey``, whose 8-bit Lab-L grey equals that of a colour of lightness L).

    Searches the 5x5x5 neighbourhood of the rounded colour; raises ``ValueError`` when no
    neighbour meets the constraints or the colour is out of gamut.
    """
    lab = np.asarray(lab, dtype=np.float64)
    if not in_srgb_gamut(lab):
        raise ValueError(f"colour Lab{tuple(np.round(lab, 2))} is outside the sRGB gamut")
    base = np.round(_lab2rgb(lab[None])[0] * 255.0).astype(int)
    offsets = np.array(list(itertools.product(range(-2, 3), repeat=3)))
    cand = np.clip(base + offsets, 0, 255)
    cand_lab = rgb2lab((cand / 255.0)[None])[0]
    ok = np.abs(cand_lab[:, 0] - lab[0]) <= l_tol
    if same_grey:
        ok &= grey_of_uint8(cand) == grey_level(lab[0])
    if not ok.any():
        raise ValueError(f"no 8-bit sRGB colour within L±{l_tol} of Lab{tuple(np.round(lab, 2))}")
    d = np.linalg.norm(cand_lab - lab, axis=1)
    d[~ok] = np.inf
    r, g, b = cand[int(np.argmin(d))]
    return int(r), int(g), int(b)


@dataclass(frozen=True)
class NamedColor:
    """A palette colour: its caption word, its 8-bit sRGB value and the exact CIELAB of that value."""

    name: str
    rgb: tuple[int, int, int]
    lab: tuple[float, float, float]

    @classmethod
    def from_lch(cls, name: str, L: float, chroma: float, hue_deg: float) -> "NamedColor":
        """Design a colour in CIELAB polar form and snap it to 8-bit sRGB."""
        h = np.deg2rad(hue_deg)
        rgb = snap_to_uint8([L, chroma * np.cos(h), chroma * np.sin(h)])
        lab = rgb2lab((np.array(rgb, dtype=np.float64) / 255.0)[None])[0]
        return cls(name, rgb, (float(lab[0]), float(lab[1]), float(lab[2])))


@dataclass(frozen=True)
class Palette:
    """An ordered set of uniquely named colours (the order is what seeds index into).

    ``lightness`` is the design CIELAB L every colour shares (None if the palette is not
    isoluminant); rendering locks the grey video to it.
    """

    colors: tuple[NamedColor, ...]
    lightness: float | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.colors]
        if len(names) < 1:
            raise ValueError("a palette needs at least 1 colour, got 0")
        if len(set(names)) != len(names):
            raise ValueError(f"palette colour names must be unique, got {names}")
        if self.lightness is not None:
            worst = max(abs(c.lab[0] - self.lightness) for c in self.colors)
            if worst > 0.5:
                raise ValueError(f"palette lightness {self.lightness} is off by {worst:.2f} L for some colour (limit 0.5)")

    @classmethod
    def from_mapping(cls, colors: Mapping[str, Sequence[float]]) -> "Palette":
        """Build from ``{name: (L, a, b)}``; colours are snapped to 8-bit sRGB like the built-ins.

        The palette counts as isoluminant (``lightness`` set to the median L) when every given
        L is within 0.5 of the median.
        """
        out = []
        for name, lab in colors.items():
            rgb = snap_to_uint8(lab, l_tol=0.5)
            exact = rgb2lab((np.array(rgb, dtype=np.float64) / 255.0)[None])[0]
            out.append(NamedColor(name, rgb, tuple(float(v) for v in exact)))  # type: ignore[arg-type]
        given = np.array([float(v[0]) for v in colors.values()])
        median = float(np.median(given)) if len(given) else 0.0
        iso = len(given) > 0 and bool(np.all(np.abs(given - median) <= 0.5))
        return cls(tuple(out), median if iso else None)

    def __len__(self) -> int:
        return len(self.colors)

    def __iter__(self) -> Iterator[NamedColor]:
        return iter(self.colors)

    def __getitem__(self, name: str) -> NamedColor:
        for c in self.colors:
            if c.name == name:
                return c
        raise KeyError(f"no colour named {name!r} in palette {self.names}")

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.colors)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.colors]

    @property
    def lab(self) -> np.ndarray:
        """``(n, 3)`` float64 CIELAB of the 8-bit colours, in palette order."""
        return np.array([c.lab for c in self.colors], dtype=np.float64)

    @property
    def rgb(self) -> np.ndarray:
        """``(n, 3)`` uint8 sRGB, in palette order."""
        return np.array([c.rgb for c in self.colors], dtype=np.uint8)

    def index(self, name: str) -> int:
        """Position of ``name``; ``ValueError`` (listing the names) if absent."""
        for i, c in enumerate(self.colors):
            if c.name == name:
                return i
        raise ValueError(f"no colour named {name!r} in palette {self.names}")

    def to_json(self) -> list[dict]:
        """JSON-friendly list of ``{"name", "rgb", "lab"}`` records."""
        return [{"name": c.name, "rgb": list(c.rgb), "lab": [round(v, 4) for v in c.lab]} for c in self.colors]


# Hue angles are CIELAB h_ab in degrees; chroma is kept below the gamut limit at that L and hue
# (cyan and blue are the narrowest: max chroma at L=60 is about 35 and 50).
SHAPE_PALETTE = Palette(
    tuple(
        NamedColor.from_lch(name, SHAPE_L, chroma, hue)
        for name, chroma, hue in [
            ("red", 60.0, 35.0),
            ("orange", 58.0, 65.0),
            ("yellow", 55.0, 95.0),
            ("green", 52.0, 140.0),
            ("cyan", 30.0, 200.0),
            ("blue", 45.0, 270.0),
            ("purple", 55.0, 310.0),
            ("pink", 58.0, 345.0),
        ]
    ),
    lightness=SHAPE_L,
)

BACKGROUND_PALETTE = Palette(
    tuple(
        NamedColor.from_lch(name, BACKGROUND_L, chroma, hue)
        for name, chroma, hue in [
            ("maroon", 40.0, 25.0),
            ("brown", 35.0, 65.0),
            ("olive", 30.0, 100.0),
            ("forest green", 32.0, 145.0),
            ("teal", 16.0, 195.0),
            ("navy", 28.0, 280.0),
            ("plum", 35.0, 325.0),
            ("charcoal", 0.0, 0.0),
        ]
    ),
    lightness=BACKGROUND_L,
)
