"""Temporally Deformable Attention (L-C4 §3.2, eqs. 1–3) and the temporal modules of the ablations.

Every temporal module maps the hidden states of a clip, folded as `(b f) (h w) c`, to a residual
update of the same shape, and starts at zero (zero-initialised output projection), so a UNet that
carries them reproduces the image model exactly until training moves them.

* `TemporalDeformableAttention` — the paper's module: reference grid → offsets → trilinear
  sampling → every position attends over the sampled points. With `position_bias`, a learned
  Gaussian of the distance between each query and each deformed sampling point is added to the
  attention logits (not in the paper, docs/decisions.md): without it a query cannot tell where a
  sampled point came from, and the trained module pools the whole clip nearly uniformly.
* `FixedTemporalAttention` — "w/o TDA": attention along time at fixed spatial locations
  (AnimateDiff-style), with sinusoidal frame positions.
* `TemporalConv3d` — Table 4's "3D convolution" variant.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import attend, zero_module

TEMPORAL_KINDS = ("tda", "temporal_attention", "conv3d", "none")


@dataclass(frozen=True)
class ClipGeometry:
    """How the folded batch `(b f) (h w) c` unfolds: frames per clip and the feature-map size."""

    num_frames: int
    height: int
    width: int


def _odd_kernel(stride: int) -> tuple[int, int]:
    """Kernel and padding so a strided conv yields ceil(n / stride) outputs for any n."""
    return 2 * (stride // 2) + 1, stride // 2


def reference_positions(size: int, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform grid of ceil(size/stride) points over [0, size-1], at the centres of the strided cells."""
    count = math.ceil(size / stride)
    idx = torch.arange(count, device=device, dtype=dtype)
    return (idx + 0.5) * (size / count) - 0.5


SAMPLE_PADDINGS = ("zeros", "border")


def trilinear_sample(x: torch.Tensor, positions: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Eq. 2: sample `x` (b, c, F, H, W) at `positions` (b, f, h, w, 3) given as (x, y, t) in cells.

    Positions are in feature-cell / frame units (index space); with `padding="zeros"` locations
    outside the clip read zeros, exactly g(a, b) = max(0, 1 − |a − b|) weighting with h = 0 outside;
    `"border"` reads the nearest cell of the clip instead (not in L-C4). Returns (b, c, f, h, w).
    """
    frames, height, width = x.shape[-3:]
    sizes = positions.new_tensor([width, height, frames])
    grid = (2 * positions + 1) / sizes - 1  # index → normalised, align_corners=False convention
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=False)


class DeformableSampler(nn.Module):
    """Steps 1–3 of TDA: reference points, offsets Δp = tanh(δ_offset(h W_o)), sampling at p + αΔp.

    Input (b, c, F, H, W); output the sampled context (b, c, F', H', W') on the compressed grid
    F' = ⌈F / N^rt⌉, H' = ⌈H / N^rs⌉, W' = ⌈W / N^rs⌉. The offset head starts at zero, so sampling
    starts exactly on the reference grid. `padding="border"` keeps every point's reading inside the
    clip, so moving a point out of the clip cannot act as a gain that fades its values to zero.
    """

    def __init__(
        self,
        dim: int,
        spatial_stride: int = 2,
        temporal_stride: int = 2,
        alpha: float = 4.0,
        offset_dim: int | None = None,
        padding: str = "zeros",
    ):
        super().__init__()
        if padding not in SAMPLE_PADDINGS:
            raise ValueError(f"deformable sampling padding must be one of {', '.join(SAMPLE_PADDINGS)}; got {padding!r}")
        self.padding = padding
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"deformable sampling alpha must be a finite number >= 0; got {alpha!r}")
        for name, stride in (("spatial_stride", spatial_stride), ("temporal_stride", temporal_stride)):
            if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
                raise ValueError(f"deformable sampling {name} must be an integer >= 1; got {stride!r}")
        offset_dim = offset_dim or max(8, dim // 4)
        self.spatial_stride, self.temporal_stride, self.alpha = spatial_stride, temporal_stride, alpha
        kt, pt = _odd_kernel(temporal_stride)
        ks, ps = _odd_kernel(spatial_stride)
        self.project = nn.Conv3d(dim, offset_dim, 1)  # W_o
        self.offset_net = nn.Sequential(  # δ_offset: depthwise strided 3D conv, then a pointwise head
            nn.Conv3d(offset_dim, offset_dim, (kt, ks, ks), (temporal_stride, spatial_stride, spatial_stride),
                      (pt, ps, ps), groups=offset_dim),
            nn.GELU(),
            zero_module(nn.Conv3d(offset_dim, 3, 1)),
        )

    def reference_grid(self, frames: int, height: int, width: int, device=None) -> torch.Tensor:
        """(F', H', W', 3) reference points p as (x, y, t) in cell units."""
        t = reference_positions(frames, self.temporal_stride, device)
        y = reference_positions(height, self.spatial_stride, device)
        x = reference_positions(width, self.spatial_stride, device)
        tt, yy, xx = torch.meshgrid(t, y, x, indexing="ij")
        return torch.stack([xx, yy, tt], dim=-1)

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """α·Δp as (b, F', H', W', 3) in cell units, channels ordered (x, y, t)."""
        raw = self.offset_net(self.project(x)).float()
        return self.alpha * rearrange(torch.tanh(raw), "b c f h w -> b f h w c")

    def points(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """The sampling points p + αΔp (b, F', H', W', 3) as (x, y, t) in cells, for dense `x`;
        `offsets` (b, F', H', W', 3) overrides the predicted ones (tests)."""
        frames, height, width = x.shape[-3:]
        offsets = self.offsets(x) if offsets is None else offsets
        return self.reference_grid(frames, height, width, x.device) + offsets

    def forward(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Sample `x` at p + αΔp; `offsets` (b, F', H', W', 3) overrides the predicted ones (tests)."""
        # a 5D view of channels-last features crashes Conv3d's CPU backward (torch 2.13): densify first
        x = x.contiguous()
        return trilinear_sample(x, self.points(x, offsets), self.padding)


def check_sigma_range(sigma: object, field: str = "position_bias_sigma") -> tuple[float, float]:
    """Two finite numbers 0 < low <= high: the distance bias's spatial widths at start, in compressed cells."""
    ok = (isinstance(sigma, (tuple, list)) and len(sigma) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in sigma)
          and sigma[0] <= sigma[1])
    if not ok:
        raise ValueError(f"{field} must be two numbers 0 < low <= high (compressed cells); got {sigma!r}")
    return float(sigma[0]), float(sigma[1])


class DistanceBias(nn.Module):
    """Per-head Gaussian logit bias −Δxy²/2σ_s² − Δt²/2σ_t² between queries and sampling points.

    The widths are learned (log σ). At start the heads span σ_s = `sigma` = (1, 16) compressed cells
    (log-spaced), from "read the same place in the other frames" to "read the whole frame", and
    σ_t = 4 clip frames for all, so every frame of a clip is read nearly alike. Positions are in
    feature cells / frames. A narrow range such as (0.5, 1) starts every head as attention at fixed
    locations (the "w/o TDA" module's prior), which the deformable points and σ can then widen.
    """

    def __init__(self, heads: int, spatial_stride: int = 2, temporal_stride: int = 2,
                 sigma: tuple[float, float] = (1.0, 16.0)):
        super().__init__()
        low, high = (math.log2(v) for v in check_sigma_range(sigma))
        spatial = spatial_stride * torch.logspace(low, high, heads, base=2.0)
        temporal = torch.full((heads,), 4.0 * temporal_stride)
        self.log_sigma = nn.Parameter(torch.stack([spatial, temporal], dim=-1).log())  # (heads, 2)

    def spatial(self, query_xy: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The spatial term for query cells (n, 2) and keys (b, m, 3) as (x, y, t): (b, heads, n, m)."""
        dist = (query_xy[None, :, None, :] - keys[:, None, :, :2]).square().sum(-1)  # (b, n, m)
        return -0.5 * torch.einsum("bnm,h->bhnm", dist, torch.exp(-2 * self.log_sigma[:, 0].float()))

    def temporal(self, frame: float, keys: torch.Tensor) -> torch.Tensor:
        """The temporal term for queries in frame `frame`: (b, heads, 1, m)."""
        dist = (frame - keys[..., 2]).square()  # (b, m)
        return -0.5 * torch.einsum("bm,h->bhm", dist, torch.exp(-2 * self.log_sigma[:, 1].float()))[:, :, None]


class TemporalDeformableAttention(nn.Module):
    """TDA: every position of the clip queries the deformably sampled, compressed clip (eqs. 1–3)."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int | None = None,
        spatial_stride: int = 2,
        temporal_stride: int = 2,
        alpha: float = 4.0,
        position_bias: bool = False,
        padding: str = "zeros",
        position_bias_sigma: tuple[float, float] = (1.0, 16.0),
    ):
        super().__init__()
        dim_head = dim_head or dim // heads
        inner = heads * dim_head
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.sampler = DeformableSampler(dim, spatial_stride, temporal_stride, alpha, padding=padding)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = zero_module(nn.Linear(inner, dim))  # W_h, zero: starts as identity residual
        self.distance_bias = (DistanceBias(heads, spatial_stride, temporal_stride, position_bias_sigma)
                              if position_bias else None)

    def forward(self, hidden: torch.Tensor, geometry: ClipGeometry) -> torch.Tensor:
        f, h, w = geometry.num_frames, geometry.height, geometry.width
        x = self.norm(hidden)
        clip = rearrange(x, "(b f) (h w) c -> b c f h w", f=f, h=h)
        if self.distance_bias is None:
            context = rearrange(self.sampler(clip), "b c f h w -> b (f h w) c")
            queries = rearrange(x, "(b f) n c -> b (f n) c", f=f)
            out = attend(self.to_q(queries), self.to_k(context), self.to_v(context), self.heads)
            return rearrange(self.to_out(out), "b (f n) c -> (b f) n c", f=f)
        # with the distance bias: the sampling points' positions are needed, and the bias is built one
        # query frame at a time, (b, heads, h·w, m) instead of f times that; its spatial term is the
        # same for every frame
        clip = clip.contiguous()  # (see DeformableSampler.forward)
        points = self.sampler.points(clip)  # (b, F', H', W', 3)
        context = rearrange(trilinear_sample(clip, points, self.sampler.padding), "b c f h w -> b (f h w) c")
        k, v = self.to_k(context), self.to_v(context)
        points = rearrange(points, "b f h w k -> b (f h w) k")
        q = rearrange(self.to_q(x), "(b f) n c -> f b n c", f=f)
        yy, xx = torch.meshgrid(reference_positions(h, 1, x.device), reference_positions(w, 1, x.device), indexing="ij")
        spatial = self.distance_bias.spatial(torch.stack([xx.flatten(), yy.flatten()], dim=-1), points)
        out = [attend(q[i], k, v, self.heads, bias=spatial + self.distance_bias.temporal(float(i), points))
               for i in range(f)]
        return rearrange(self.to_out(torch.stack(out)), "f b n c -> (b f) n c")


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) sinusoidal frame-position encoding."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return enc


class FixedTemporalAttention(nn.Module):
    """"W/o TDA" ablation: each spatial location attends over the same location in all frames."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int | None = None, **_: object):
        super().__init__()
        dim_head = dim_head or dim // heads
        inner = heads * dim_head
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = zero_module(nn.Linear(inner, dim))

    def forward(self, hidden: torch.Tensor, geometry: ClipGeometry) -> torch.Tensor:
        f = geometry.num_frames
        x = self.norm(hidden)
        x = rearrange(x, "(b f) n c -> (b n) f c", f=f)
        x = x + sinusoidal_positions(f, x.shape[-1], x.device).to(x.dtype)
        out = self.to_out(attend(self.to_q(x), self.to_k(x), self.to_v(x), self.heads))
        return rearrange(out, "(b n) f c -> (b f) n c", n=hidden.shape[1])


class TemporalConv3d(nn.Module):
    """Table 4's "3D convolution" variant: a bottlenecked 3×3×3 conv over the clip."""

    def __init__(self, dim: int, bottleneck: int = 4, **_: object):
        super().__init__()
        hidden = max(8, dim // bottleneck)
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Sequential(
            nn.Conv3d(dim, hidden, 1),
            nn.SiLU(),
            nn.Conv3d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
            zero_module(nn.Conv3d(hidden, dim, 1)),
        )

    def forward(self, hidden: torch.Tensor, geometry: ClipGeometry) -> torch.Tensor:
        f, h = geometry.num_frames, geometry.height
        clip = rearrange(self.norm(hidden), "(b f) (h w) c -> b c f h w", f=f, h=h).contiguous()
        return rearrange(self.conv(clip), "b c f h w -> (b f) (h w) c")


def make_temporal_module(kind: str, dim: int, heads: int, dim_head: int, **options: object) -> nn.Module:
    """Build the temporal module named by config: `tda`, `temporal_attention` or `conv3d`."""
    if kind == "tda":
        return TemporalDeformableAttention(dim, heads, dim_head, **options)
    if kind == "temporal_attention":
        return FixedTemporalAttention(dim, heads, dim_head)
    if kind == "conv3d":
        return TemporalConv3d(dim)
    raise ValueError(f"unknown temporal module {kind!r}; choose one of {', '.join(TEMPORAL_KINDS)}")


TemporalFuser = Callable[[torch.Tensor, ClipGeometry], torch.Tensor]
"""Cross-clip fusion hook: takes a temporal module's output `(b f) n c` and returns it fused."""
