"""Per-instance motion: translation, sway, spin, pulsing scale, shear and outline wobble.

A :class:`Trajectory` is a closed-form function of the frame index, so any frame can be drawn
on its own and a long video costs the same per frame as a short one. Short clips move fast
(a shape may cross the frame edge and leave or enter within 8 frames); long videos
(``long=True``) move slowly along Lissajous-like paths wide enough that shapes leave and come
back, which is what tests long-range colour memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import Pose

__all__ = ["Trajectory", "sample_trajectory", "EXIT_PROBABILITY"]

#: Chance that a short-clip instance is sent across the frame edge (leaving or entering).
EXIT_PROBABILITY = 0.3


def _sine(amp: float, period: float, phase: float, t: float) -> float:
    return amp * np.sin(2.0 * np.pi * t / period + phase)


@dataclass(frozen=True)
class Trajectory:
    """Closed-form pose of one instance over time (pixels, radians, frames)."""

    start: tuple[float, float]
    velocity: tuple[float, float]
    sway_amp: tuple[float, float]
    sway_period: tuple[float, float]
    sway_phase: tuple[float, float]
    radius: float
    scale_amp: float
    scale_period: float
    scale_phase: float
    angle0: float
    spin: float
    shear_amp: float
    shear_period: float
    shear_phase: float
    wobble: float
    lobes: int
    wobble_speed: float
    wobble_phase0: float

    def pose(self, t: float) -> Pose:
        """The pose at frame ``t``."""
        cx = self.start[0] + self.velocity[0] * t + _sine(self.sway_amp[0], self.sway_period[0], self.sway_phase[0], t)
        cy = self.start[1] + self.velocity[1] * t + _sine(self.sway_amp[1], self.sway_period[1], self.sway_phase[1], t)
        scale = self.radius * (1.0 + _sine(self.scale_amp, self.scale_period, self.scale_phase, t))
        return Pose(
            cx=float(cx),
            cy=float(cy),
            scale=float(scale),
            angle=float(self.angle0 + self.spin * t),
            shear=float(_sine(self.shear_amp, self.shear_period, self.shear_phase, t)),
            wobble=float(self.wobble),
            lobes=int(self.lobes),
            wobble_phase=float(self.wobble_phase0 + self.wobble_speed * t),
        )

    @property
    def reach(self) -> float:
        """Upper bound on the distance from the centre to any covered pixel."""
        return self.radius * (1.0 + self.scale_amp) * (1.0 + self.wobble) * (1.0 + self.shear_amp)


def sample_trajectory(
    rng: np.random.Generator, size: int, num_frames: int, long: bool = False, cell: int = 4
) -> Trajectory:
    """Draw one instance's motion for a ``size``² video of ``num_frames`` frames.

    ``cell`` (0..8, row-major in a 3x3 grid) is where the shape starts (short clips) or the
    centre of its path (long videos); giving instances different cells limits how much they
    overlap (the grey video cannot show where two touching isoluminant shapes meet).

    Always consumes the same number of random draws (and none depend on colours), so the
    instances after this one, and re-coloured versions of a seed, keep their geometry.
    """
    if not 0 <= cell <= 8:
        raise ValueError(f"cell must be in [0, 8], got {cell}")
    S, T = float(size), int(num_frames)
    u = rng.uniform
    row, col = divmod(cell, 3)
    radius = S * u(0.10, 0.17)
    angle0, lobes, wobble_phase0 = u(0.0, 2 * np.pi), int(rng.integers(2, 6)), u(0.0, 2 * np.pi)
    sway_phase = (u(0.0, 2 * np.pi), u(0.0, 2 * np.pi))
    scale_phase, shear_phase = u(0.0, 2 * np.pi), u(0.0, 2 * np.pi)
    exit_draws = rng.uniform(size=6)  # drawn in both modes so the draw count is fixed
    if long:
        start = (S * (0.3 + 0.2 * col + u(-0.07, 0.07)), S * (0.3 + 0.2 * row + u(-0.07, 0.07)))
        velocity = (0.0, 0.0)
        sway_amp = (S * u(0.15, 0.6), S * u(0.15, 0.6))
        sway_period = (u(96.0, 320.0), u(96.0, 320.0))
        scale_amp, scale_period = u(0.0, 0.15), u(64.0, 256.0)
        spin = u(-0.03, 0.03)
        shear_amp, shear_period = u(0.0, 0.3), u(64.0, 256.0)
        wobble, wobble_speed = u(0.0, 0.08), u(-0.05, 0.05)
    else:
        start = (S * (0.2 + 0.3 * col + u(-0.1, 0.1)), S * (0.2 + 0.3 * row + u(-0.1, 0.1)))
        heading, speed = u(0.0, 2 * np.pi), S * u(0.003, 0.02)
        velocity = (speed * np.cos(heading), speed * np.sin(heading))
        sway_amp = (S * u(0.0, 0.03), S * u(0.0, 0.03))
        sway_period = (u(6.0, 16.0), u(6.0, 16.0))
        scale_amp, scale_period = u(0.0, 0.15), u(8.0, 24.0)
        spin = u(-0.15, 0.15)
        shear_amp, shear_period = u(0.0, 0.3), u(8.0, 24.0)
        wobble, wobble_speed = u(0.0, 0.08), u(-0.4, 0.4)
        if T >= 4 and exit_draws[0] < EXIT_PROBABILITY:
            start, velocity = _crossing(S, T, radius * (1 + scale_amp) * (1 + wobble) * (1 + shear_amp), exit_draws[1:])
            sway_amp = (0.0, 0.0)
    return Trajectory(
        start=(float(start[0]), float(start[1])),
        velocity=(float(velocity[0]), float(velocity[1])),
        sway_amp=(float(sway_amp[0]), float(sway_amp[1])),
        sway_period=(float(sway_period[0]), float(sway_period[1])),
        sway_phase=(float(sway_phase[0]), float(sway_phase[1])),
        radius=float(radius),
        scale_amp=float(scale_amp),
        scale_period=float(scale_period),
        scale_phase=float(scale_phase),
        angle0=float(angle0),
        spin=float(spin),
        shear_amp=float(shear_amp),
        shear_period=float(shear_period),
        shear_phase=float(shear_phase),
        wobble=float(wobble),
        lobes=lobes,
        wobble_speed=float(wobble_speed),
        wobble_phase0=float(wobble_phase0),
    )


def _crossing(S: float, T: int, reach: float, draws: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and velocity of a shape that crosses a frame edge and is fully outside at one end.

    ``draws`` are five uniforms: edge, crossing point along it, heading jitter, crossing time,
    leave-or-enter.
    """
    edge = int(draws[0] * 4) % 4
    normal = [(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)][edge]  # left, right, top, bottom
    tangent = (-normal[1], normal[0])
    along = S * (0.2 + 0.6 * draws[1])
    on_edge = {0: (0.0, along), 1: (S, along), 2: (along, 0.0), 3: (along, S)}[edge]
    jitter = (draws[2] - 0.5) * 1.0  # ±0.5 rad from the outward normal
    direction = np.array(normal) * np.cos(jitter) + np.array(tangent) * np.sin(jitter)
    t_cross = 0.25 * (T - 1) + 0.25 * (T - 1) * draws[3]
    # Fully outside by the last frame: travel ``1.2 reach`` past the edge along the normal.
    speed = 1.2 * reach / ((T - 1 - t_cross) * np.cos(jitter))
    velocity = direction * speed
    start = np.array(on_edge) - velocity * t_cross
    if draws[4] < 0.5:  # enter instead of leave: play the same path backwards
        start, velocity = start + velocity * (T - 1), -velocity
    return (float(start[0]), float(start[1])), (float(velocity[0]), float(velocity[1]))
