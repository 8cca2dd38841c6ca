"""Shape geometry and anti-aliased rasterisation (numpy, supersampled).

Every shape lives in a local frame where its outline fits in the unit disc. A *pose* maps that
frame to pixels: scale, shear, rotation, then translation. A radial *wobble*
``1 + w sin(m φ + ψ)`` deforms the outline over time. Coverage of a pixel is the fraction of
``supersample²`` sub-pixel samples inside the shape; only pixels inside the shape's bounding
box whose corners disagree (the outline) are supersampled, so long videos stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SHAPE_NAMES", "RING_INNER", "Pose", "inside", "coverage", "polygon_vertices"]


def _regular(n: int, radius: float = 1.0, start_deg: float = -90.0) -> np.ndarray:
    ang = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    ang = np.deg2rad(-90.0 + 180.0 * np.arange(2 * points) / points)
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def _cross(half_width: float = 0.34) -> np.ndarray:
    w = half_width
    return np.array(
        [(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1)],
        dtype=np.float64,
    )


# Star-shaped polygons (w.r.t. the origin), vertices in the unit disc. Circle and ring are analytic.
_POLYGONS: dict[str, np.ndarray] = {
    "triangle": _regular(3, 1.0),
    "square": _regular(4, 0.95, 45.0),
    "hexagon": _regular(6, 0.9, 0.0),
    "star": _star(5, 0.45),
    "cross": _cross(0.34) * 0.95,  # scaled so the arm-tip corners sit on the unit circle
}
#: Inner radius of the ring (outer radius 1).
RING_INNER = 0.55
#: Shape names in a fixed order (seeds index into it; append only).
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon")


def polygon_vertices(shape: str) -> np.ndarray:
    """``(k, 2)`` outline vertices (local units) of a polygonal shape; ``ValueError`` for circle/ring."""
    if shape not in _POLYGONS:
        raise ValueError(f"{shape!r} is not a polygon; polygons: {', '.join(_POLYGONS)}")
    return _POLYGONS[shape].copy()


def _polar_tables(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex angles in [0, 2π) sorted, with radii, closed by repeating the first vertex + 2π."""
    ang = np.mod(np.arctan2(vertices[:, 1], vertices[:, 0]), 2 * np.pi)
    rad = np.hypot(vertices[:, 0], vertices[:, 1])
    order = np.argsort(ang)
    ang, rad = ang[order], rad[order]
    return np.append(ang, ang[0] + 2 * np.pi), np.append(rad, rad[0])


_TABLES = {name: _polar_tables(v) for name, v in _POLYGONS.items()}


def _polygon_radius(name: str, phi: np.ndarray) -> np.ndarray:
    """Distance from the origin to a star-shaped polygon's outline along direction ``phi``."""
    ang, rad = _TABLES[name]
    phi = np.mod(phi - ang[0], 2 * np.pi) + ang[0]  # into [ang[0], ang[0] + 2π)
    k = np.clip(np.searchsorted(ang, phi, side="right") - 1, 0, len(ang) - 2)
    t1, t2, r1, r2 = ang[k], ang[k + 1], rad[k], rad[k + 1]
    # Ray/segment intersection in polar form (law of sines on the triangle origin-P1-P2).
    return r1 * r2 * np.sin(t2 - t1) / (r1 * np.sin(phi - t1) + r2 * np.sin(t2 - phi))


def inside(shape: str, x: np.ndarray, y: np.ndarray, wobble: float = 0.0, lobes: int = 3, phase: float = 0.0) -> np.ndarray:
    """Boolean inside-test at local coordinates ``(x, y)`` with a radial wobble of amplitude ``wobble``."""
    rho = np.hypot(x, y)
    phi = np.arctan2(y, x)
    if wobble:
        rho = rho / (1.0 + wobble * np.sin(lobes * phi + phase))
    if shape == "circle":
        return rho <= 1.0
    if shape == "ring":
        return (rho <= 1.0) & (rho >= RING_INNER)
    if shape in _TABLES:
        return rho <= _polygon_radius(shape, phi)
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPE_NAMES)}")


@dataclass(frozen=True)
class Pose:
    """Where and how a shape is drawn in one frame (pixel units, angles in radians)."""

    cx: float
    cy: float
    scale: float  # radius of the unit disc in pixels
    angle: float = 0.0
    shear: float = 0.0
    wobble: float = 0.0
    lobes: int = 3
    wobble_phase: float = 0.0

    def matrix(self) -> np.ndarray:
        """2x2 local -> pixel linear map: rotation @ shear @ scale."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        shear = np.array([[1.0, self.shear], [0.0, 1.0]])
        return rot @ shear * self.scale


def coverage(shape: str, pose: Pose, height: int, width: int, supersample: int = 4) -> np.ndarray:
    """``(height, width)`` float32 fraction of each pixel covered by ``shape`` at ``pose``.

    Pixel ``(row, col)`` spans ``[col, col+1) x [row, row+1)`` in pixel coordinates.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    out = np.zeros((height, width), dtype=np.float32)
    m = pose.matrix()
    reach = (1.0 + abs(pose.wobble)) * np.linalg.norm(m, 2) + 1.0  # bounding radius in pixels
    x0, x1 = max(int(np.floor(pose.cx - reach)), 0), min(int(np.ceil(pose.cx + reach)), width)
    y0, y1 = max(int(np.floor(pose.cy - reach)), 0), min(int(np.ceil(pose.cy + reach)), height)
    if x0 >= x1 or y0 >= y1:
        return out
    inv = np.linalg.inv(m)

    def hit(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        dx, dy = px - pose.cx, py - pose.cy
        lx = inv[0, 0] * dx + inv[0, 1] * dy
        ly = inv[1, 0] * dx + inv[1, 1] * dy
        return inside(shape, lx, ly, pose.wobble, pose.lobes, pose.wobble_phase)

    # Pixels whose four corners agree are taken as fully in or out; only the others (the
    # outline) are supersampled. Features thinner than a pixel between corners can be missed.
    cy, cx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float64)
    corners = hit(cx, cy)
    c00, c01, c10, c11 = corners[:-1, :-1], corners[:-1, 1:], corners[1:, :-1], corners[1:, 1:]
    box = (c00 & c01 & c10 & c11).astype(np.float32)
    mixed = (c00 | c01 | c10 | c11) & ~(c00 & c01 & c10 & c11)
    rows, cols = np.nonzero(mixed)
    if rows.size:
        sub = (np.arange(supersample) + 0.5) / supersample
        sy, sx = np.meshgrid(sub, sub, indexing="ij")
        py = (rows + y0)[:, None] + sy.ravel()[None, :]
        px = (cols + x0)[:, None] + sx.ravel()[None, :]
        box[rows, cols] = hit(px, py).mean(axis=1)
    out[y0:y1, x0:x1] = box
    return out
