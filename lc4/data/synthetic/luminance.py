"""Make the grey video exactly colour-independent.

Shapes share one CIELAB L and backgrounds another, but rounding colours to 8-bit sRGB moves L
by up to ~0.3, enough to flip the 8-bit grey value (:func:`lc4.color.to_grey`) of some pixels
depending on the hue. :func:`lock_grey` nudges each such pixel's R, G, B by at most ±2 levels
so that its grey equals a target computed from the *design* lightness (which depends only on
geometry and texture). Then two videos that differ only in colours have identical grey frames.
"""

from __future__ import annotations

import itertools

import numpy as np

from lc4.color import XYZ_FROM_RGB

__all__ = ["grey_level", "grey_of_uint8", "lock_grey", "luminance_of_uint8"]

# sRGB transfer curve and CIELAB constants as in lc4.color / skimage.
_ENC_T, _DEC_T, _F_EPS, _KAPPA = 0.04045, 0.0031308, 0.2068966, 7.787
_W = np.asarray(XYZ_FROM_RGB[1], dtype=np.float64)
# All offsets in {-2..2}³, cheapest (smallest squared size) first; the first 27 are {-1..1}³.
_OFFSETS = np.array(sorted(itertools.product(range(-2, 3), repeat=3), key=lambda o: sum(v * v for v in o)), dtype=np.int64)
_NEAR = 27


def _decode(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return np.where(v > _ENC_T, ((np.maximum(v, _ENC_T) + 0.055) / 1.055) ** 2.4, v / 12.92)


def _encode(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > _DEC_T, 1.055 * np.maximum(y, _DEC_T) ** (1 / 2.4) - 0.055, 12.92 * y)


_LIN = _decode(np.arange(256) / 255.0)


def luminance_of_uint8(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance Y of 8-bit sRGB ``(..., 3)`` (exact table lookup)."""
    rgb = np.asarray(rgb)
    return _LIN[rgb[..., 0]] * _W[0] + _LIN[rgb[..., 1]] * _W[1] + _LIN[rgb[..., 2]] * _W[2]


def _grey_of_y(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(_encode(y), 0.0, 1.0) * 255.0).astype(np.uint8)


def grey_of_uint8(rgb: np.ndarray) -> np.ndarray:
    """8-bit Lab-L grey value of 8-bit sRGB ``(..., 3)``; equals ``lc4.color.to_grey(rgb)[..., 0]``."""
    return _grey_of_y(luminance_of_uint8(rgb))


def grey_level(L: np.ndarray | float) -> np.ndarray:
    """The 8-bit Lab-L grey value of lightness ``L`` (what ``to_grey`` gives a colour of that L)."""
    f = (np.asarray(L, dtype=np.float64) + 16.0) / 116.0
    y = np.where(f > _F_EPS, f**3, (f - 16.0 / 116.0) / _KAPPA)
    return _grey_of_y(y)


def lock_grey(rgb: np.ndarray, target: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Return ``rgb`` (uint8 ``(..., 3)``) with pixels nudged so their 8-bit grey equals ``target``.

    Each mismatched pixel takes the offset in ``{-2..2}³`` with the smallest squared size whose
    luminance falls inside the target grey's interval (shrunk by ``margin`` of its width so
    float rounding cannot tip it over); pixels with no such offset are left unchanged.
    """
    rgb = np.asarray(rgb)
    target = np.asarray(target)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,) or target.shape != rgb.shape[:-1]:
        raise ValueError(f"need uint8 rgb (..., 3) and a target of its leading shape; got {rgb.shape}, {target.shape}")
    out = rgb.copy()
    bad = grey_of_uint8(rgb) != target
    if not bad.any():
        return out
    px = rgb[bad].astype(np.int64)  # (N, 3)
    t = target[bad].astype(np.float64)
    lo, hi = _decode((t - 0.5) / 255.0), _decode((t + 0.5) / 255.0)
    lo, hi = lo + margin * (hi - lo), hi - margin * (hi - lo)
    fixed = px.copy()
    todo = np.arange(len(px))
    for offsets in (_OFFSETS[:_NEAR], _OFFSETS[_NEAR:]):  # cheap neighbourhood first
        if not todo.size:
            break
        cand = np.clip(px[todo, None, :] + offsets[None], 0, 255)  # (N, K, 3)
        y = luminance_of_uint8(cand)
        ok = (y >= lo[todo, None]) & (y <= hi[todo, None])
        first = ok.argmax(axis=1)  # offsets are sorted by cost: the first hit is the cheapest
        found = ok[np.arange(len(todo)), first]
        fixed[todo[found]] = cand[np.arange(len(todo)), first][found]
        todo = todo[~found]
    out[bad] = fixed.astype(np.uint8)
    return out
