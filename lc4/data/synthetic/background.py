"""Background luminance textures: smooth noise, stripes and a soft checkerboard.

A texture is a closed-form function of continuous pixel coordinates with values in [-1, 1].
It only modulates CIELAB L of the background (by a few L units), never its hue, and it pans
slowly so the background is not static.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TEXTURE_KINDS", "Texture", "sample_texture"]

#: Texture kinds in a fixed order (seeds index into it; append only).
TEXTURE_KINDS: tuple[str, ...] = ("noise", "stripes", "checker")
_NOISE_WAVES = 6


@dataclass(frozen=True)
class Texture:
    """A pannable luminance pattern; ``amplitude`` is in CIELAB L units."""

    kind: str
    amplitude: float
    freqs: tuple[tuple[float, float], ...]  # wave vectors, cycles per pixel
    phases: tuple[float, ...]
    weights: tuple[float, ...]
    pan: tuple[float, float]  # pixels per frame

    def __call__(self, height: int, width: int, t: float) -> np.ndarray:
        """``(height, width)`` float64 L offset at frame ``t`` (pixel centres)."""
        y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
        x = x - self.pan[0] * t
        y = y - self.pan[1] * t
        waves = [
            np.sin(2 * np.pi * (fx * x + fy * y) + ph) for (fx, fy), ph in zip(self.freqs, self.phases)
        ]
        if self.kind == "checker":
            sharp = 3.0
            v = np.tanh(sharp * waves[0] * waves[1]) / np.tanh(sharp)
        else:
            w = np.asarray(self.weights)
            v = sum(wi * wave for wi, wave in zip(w, waves)) / np.abs(w).sum()
        return self.amplitude * v


def sample_texture(rng: np.random.Generator, size: int, long: bool = False, max_amplitude: float = 5.0) -> Texture:
    """Draw a texture for a ``size``² video (a fixed number of draws whatever the kind)."""
    kind = TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))]
    amplitude = rng.uniform(0.4, 1.0) * max_amplitude
    dirs = rng.uniform(0.0, 2 * np.pi, size=_NOISE_WAVES)
    cycles = rng.uniform(1.5, 5.0, size=_NOISE_WAVES)  # cycles across the frame
    phases = rng.uniform(0.0, 2 * np.pi, size=_NOISE_WAVES)
    weights = rng.uniform(0.3, 1.0, size=_NOISE_WAVES)
    pan_dir, pan_speed = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.0, 0.01 if not long else 0.002) * size
    if kind == "noise":
        freqs = [(c * np.cos(d) / size, c * np.sin(d) / size) for c, d in zip(cycles, dirs)]
    elif kind == "stripes":
        freqs = [(cycles[0] * np.cos(dirs[0]) / size, cycles[0] * np.sin(dirs[0]) / size)]
    else:  # checker: two orthogonal waves of the same frequency
        c, d = cycles[0] * 0.8, dirs[0]
        freqs = [(c * np.cos(d) / size, c * np.sin(d) / size), (-c * np.sin(d) / size, c * np.cos(d) / size)]
    n = len(freqs)
    return Texture(
        kind=kind,
        amplitude=float(amplitude),
        freqs=tuple((float(a), float(b)) for a, b in freqs),
        phases=tuple(float(p) for p in phases[:n]),
        weights=tuple(float(w) for w in weights[:n]),
        pan=(float(pan_speed * np.cos(pan_dir)), float(pan_speed * np.sin(pan_dir))),
    )
