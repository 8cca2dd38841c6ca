"""Colour science for L-C4: sRGB <-> CIELAB, the model's grey input, and luminance recombination.

Conventions (see ``docs/io.md``):

* **Layout follows the type.** numpy arrays are images as I/O produces them, channel-last
  ``(..., H, W, 3)``; torch tensors are model batches, channel-first ``(..., 3, H, W)``.
  Every conversion takes ``channel_dim`` to override this.
* **Range.** ``uint8`` means 0..255 (``uint16``: 0..65535); floating-point RGB means 0..1.
  CIELAB is L in 0..100, a/b roughly -128..127.
* **CIELAB** is CIE 1976 L*a*b* for sRGB (IEC 61966-2-1 transfer curve) under D65, 2° observer,
  with the same rounded constants as :func:`skimage.color.rgb2lab` so the two agree to 1e-4.
  The torch path is batched and differentiable (branches are clamped so no NaN gradients).
* numpy inputs are computed in float64 unless they are float32 (kept float32 to save memory on
  long films); half-precision tensors are computed in float32 and cast back.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = [
    "srgb_to_linear",
    "linear_to_srgb",
    "rgb_to_lab",
    "lab_to_rgb",
    "lightness",
    "to_grey",
    "is_grey",
    "recombine_luminance",
    "fit_size",
    "resize",
    "resize_frames",
    "to_working_resolution",
    "XYZ_FROM_RGB",
    "D65_WHITE",
]

# sRGB primaries -> CIE XYZ (the matrix scikit-image uses) and the D65 / 2° white point.
XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])

# CIE 1976 constants as rounded in scikit-image (exact values: 216/24389, 24389/3132, 6/29).
_LAB_EPS = 0.008856
_LAB_KAPPA = 7.787
_LAB_F_EPS = 0.2068966
_SRGB_ENC_THRESH = 0.04045
_SRGB_DEC_THRESH = 0.0031308

Array = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------
# dtype / layout plumbing
# --------------------------------------------------------------------------------------


def _default_channel_dim(x: Array, channel_dim: int | None) -> int:
    if channel_dim is not None:
        return channel_dim
    return -1 if isinstance(x, np.ndarray) else -3


def _check_channels(x: Array, dim: int, what: str) -> None:
    if x.ndim == 0 or not (-x.ndim <= dim < x.ndim) or x.shape[dim] != 3:
        raise ValueError(
            f"{what} must have 3 channels on axis {dim}; got shape {tuple(x.shape)}"
        )


def _float_tensor(x: Array) -> tuple[torch.Tensor, object]:
    """Convert ``x`` to a floating tensor in 0..1 (integers scaled) and remember how to go back."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            t = torch.from_numpy(x.astype(np.float64) / 255.0)
        elif x.dtype == np.uint16:
            t = torch.from_numpy(x.astype(np.float64) / 65535.0)
        elif x.dtype in (np.float32, np.float64):
            t = torch.from_numpy(np.ascontiguousarray(x))
        elif x.dtype == np.float16:
            t = torch.from_numpy(x.astype(np.float32))
        else:
            raise ValueError(f"unsupported numpy dtype {x.dtype}; use uint8, uint16 or float")
        return t, ("numpy", x.dtype)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0, ("torch", x.dtype)
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.to(torch.float32), ("torch", x.dtype)
    if x.dtype in (torch.float32, torch.float64):
        return x, ("torch", x.dtype)
    raise ValueError(f"unsupported tensor dtype {x.dtype}; use uint8 or a float dtype")


def _back(t: torch.Tensor, how: object) -> Array:
    """Return a float result in the caller's array type (float64/float32 for numpy)."""
    kind, dtype = how  # type: ignore[misc]
    if kind == "numpy":
        out = t.detach().cpu().numpy()
        return out.astype(np.float32) if dtype in (np.float32, np.float16) else out
    if dtype in (torch.float16, torch.bfloat16):
        return t.to(dtype)
    return t


def _apply_matrix(x: torch.Tensor, m: np.ndarray, dim: int) -> torch.Tensor:
    """Multiply the 3-vector on axis ``dim`` of ``x`` by the 3x3 matrix ``m``."""
    mt = torch.as_tensor(m, dtype=x.dtype, device=x.device)
    x = torch.movedim(x, dim, -1)
    return torch.movedim(x @ mt.T, -1, dim)


def _white(x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * x.ndim
    shape[dim] = 3
    return torch.as_tensor(D65_WHITE, dtype=x.dtype, device=x.device).reshape(shape)


# --------------------------------------------------------------------------------------
# transfer curve and CIELAB (torch core; numpy goes through it in float64)
# --------------------------------------------------------------------------------------


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded 0..1 values -> linear light (IEC 61966-2-1), gradient-safe."""
    high = ((x.clamp_min(_SRGB_ENC_THRESH) + 0.055) / 1.055) ** 2.4
    return torch.where(x > _SRGB_ENC_THRESH, high, x / 12.92)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light -> sRGB-encoded values (not clipped), gradient-safe."""
    high = 1.055 * x.clamp_min(_SRGB_DEC_THRESH) ** (1.0 / 2.4) - 0.055
    return torch.where(x > _SRGB_DEC_THRESH, high, x * 12.92)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _LAB_EPS, t.clamp_min(_LAB_EPS) ** (1.0 / 3.0), _LAB_KAPPA * t + 16.0 / 116.0)


def _lab_f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _LAB_F_EPS, f**3, (f - 16.0 / 116.0) / _LAB_KAPPA)


def _rgb_to_lab_t(rgb: torch.Tensor, dim: int) -> torch.Tensor:
    xyz = _apply_matrix(srgb_to_linear(rgb), XYZ_FROM_RGB, dim) / _white(rgb, dim)
    fx, fy, fz = _lab_f(xyz).unbind(dim)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=dim)


def _lab_to_linear_t(lab: torch.Tensor, dim: int) -> torch.Tensor:
    """CIELAB -> linear sRGB, unclipped (may leave the 0..1 gamut)."""
    L, a, b = lab.unbind(dim)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)  # as scikit-image: negative Z is set to 0
    xyz = _lab_f_inv(torch.stack([fx, fy, fz], dim=dim)) * _white(lab, dim)
    return _apply_matrix(xyz, RGB_FROM_XYZ, dim)


def rgb_to_lab(rgb: Array, channel_dim: int | None = None) -> Array:
    """sRGB -> CIELAB (D65). numpy: ``(..., 3)`` channel-last; torch: ``(..., 3, H, W)``.

    Integer inputs are scaled to 0..1 first; the result is floating point (float64 for
    integer or float64 numpy input, the input's float dtype otherwise).
    """
    dim = _default_channel_dim(rgb, channel_dim)
    _check_channels(rgb, dim, "rgb")
    t, how = _float_tensor(rgb)
    return _back(_rgb_to_lab_t(t, dim), how)


def lab_to_rgb(lab: Array, channel_dim: int | None = None, clip: bool = True) -> Array:
    """CIELAB (D65) -> sRGB in 0..1, clipped to the gamut like :func:`skimage.color.lab2rgb`.

    With ``clip=False`` out-of-gamut values are returned as they are (useful to detect them).
    """
    dim = _default_channel_dim(lab, channel_dim)
    _check_channels(lab, dim, "lab")
    floating = lab.dtype.kind == "f" if isinstance(lab, np.ndarray) else lab.is_floating_point()
    if not floating:
        raise ValueError(f"lab must be a floating-point array, got dtype {lab.dtype}")
    t, how = _float_tensor(lab)
    rgb = linear_to_srgb(_lab_to_linear_t(t, dim))
    if clip:
        rgb = rgb.clamp(0.0, 1.0)
    return _back(rgb, how)


def _luminance_t(rgb: torch.Tensor, dim: int) -> torch.Tensor:
    """Relative luminance Y (linear, 0..1) of sRGB values, channel kept (size 1)."""
    weights = torch.as_tensor(XYZ_FROM_RGB[1], dtype=rgb.dtype, device=rgb.device)
    shape = [1] * rgb.ndim
    shape[dim] = 3
    return (srgb_to_linear(rgb) * weights.reshape(shape)).sum(dim=dim, keepdim=True)


def lightness(rgb: Array, channel_dim: int | None = None) -> Array:
    """CIELAB L (0..100) of sRGB values, with the channel axis kept at size 1."""
    dim = _default_channel_dim(rgb, channel_dim)
    _check_channels(rgb, dim, "rgb")
    t, how = _float_tensor(rgb)
    return _back(116.0 * _lab_f(_luminance_t(t, dim)) - 16.0, how)


# --------------------------------------------------------------------------------------
# grey frames
# --------------------------------------------------------------------------------------


def to_grey(rgb: Array, channel_dim: int | None = None) -> Array:
    """The grey frame the model sees ("Lab-L grey", the paper's protocol).

    Keeps CIELAB L, sets a = b = 0 and converts back to sRGB: the three channels are identical.
    Because L depends only on luminance Y and the sRGB->Y weights sum to 1, this is computed
    exactly as ``encode(Y)`` on every channel (equal to ``lab2rgb([L, 0, 0])`` to ~1e-4, and
    round-tripping L to float precision). Output dtype and layout follow the input
    (``uint8`` in -> ``uint8`` out, rounded).
    """
    dim = _default_channel_dim(rgb, channel_dim)
    _check_channels(rgb, dim, "rgb")
    t, how = _float_tensor(rgb)
    grey = linear_to_srgb(_luminance_t(t, dim)).clamp(0.0, 1.0)
    reps = [1] * grey.ndim
    reps[dim] = 3
    grey = grey.repeat(*reps)
    kind, dtype = how  # type: ignore[misc]
    if dtype in (np.uint8, torch.uint8):
        grey = torch.round(grey * 255.0).to(torch.uint8)
        return grey.numpy() if kind == "numpy" else grey
    if dtype == np.uint16:
        return torch.round(grey * 65535.0).numpy().astype(np.uint16)
    return _back(grey, how)


def is_grey(frames: Array, tol: float = 0.02, fraction: float = 0.999, channel_dim: int | None = None) -> bool:
    """True when a frame or video is already grey (so the CLI can tell colour input apart).

    A pixel is grey when ``max(R, G, B) - min(R, G, B) <= tol`` (``tol`` on the 0..1 scale;
    0.02 is about 5 levels of 8-bit, above codec chroma noise, below any visible tint). The
    video is grey when at least ``fraction`` of its pixels are. Sepia-toned footage counts as
    colour (it is converted to grey like any colour input).
    """
    if not 0.0 <= tol <= 1.0:
        raise ValueError(f"tol must be in [0, 1], got {tol}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    dim = _default_channel_dim(frames, channel_dim)
    _check_channels(frames, dim, "frames")
    t, _ = _float_tensor(frames)
    if t.numel() == 0:
        raise ValueError("frames is empty")
    spread = t.amax(dim=dim) - t.amin(dim=dim)
    return bool((spread <= tol + 1e-12).double().mean().item() >= fraction)


# --------------------------------------------------------------------------------------
# luminance recombination
# --------------------------------------------------------------------------------------


def _reduce_chroma_into_gamut(L: torch.Tensor, ab: torch.Tensor, iters: int = 14) -> torch.Tensor:
    """Scale (a, b) toward 0 per pixel, at fixed L, until the colour is inside sRGB.

    ``L`` is (N,), ``ab`` (N, 2) for the out-of-gamut pixels only. Grey (L, 0, 0) is always in
    gamut for 0 <= L <= 100, so bisection on the scale in [0, 1] converges; the in-gamut end
    is returned (precision 2**-iters of the chroma).
    """
    lo = torch.zeros_like(L)
    hi = torch.ones_like(L)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lab = torch.cat([L[:, None], ab * mid[:, None]], dim=1)
        lin = _lab_to_linear_t(lab, dim=1)
        inside = ((lin >= -1e-6) & (lin <= 1.0 + 1e-6)).all(dim=1)
        lo = torch.where(inside, mid, lo)
        hi = torch.where(inside, hi, mid)
    return ab * lo[:, None]


def _pred_to_tensor(pred: Array) -> torch.Tensor:
    """Predicted frames -> float32 (T, 3, h, w) in 0..1. numpy channel-last, torch channel-first."""
    if isinstance(pred, np.ndarray):
        if pred.ndim not in (3, 4):
            raise ValueError(f"pred_rgb must be (H, W, 3) or (T, H, W, 3); got shape {pred.shape}")
        _check_channels(pred, -1, "pred_rgb")
        t, _ = _float_tensor(pred)
        t = t.float()
        t = t[None] if t.ndim == 3 else t
        return rearrange(t, "t h w c -> t c h w")
    if isinstance(pred, torch.Tensor):
        if pred.ndim not in (3, 4):
            raise ValueError(f"pred_rgb must be (3, H, W) or (T, 3, H, W); got shape {tuple(pred.shape)}")
        _check_channels(pred, -3, "pred_rgb")
        t, _ = _float_tensor(pred.detach())
        t = t.float()
        return t[None] if t.ndim == 3 else t
    raise ValueError(f"pred_rgb must be a numpy array or torch tensor, got {type(pred).__name__}")


def recombine_luminance(
    pred_rgb: Array,
    source: np.ndarray,
    gamut: Literal["chroma", "clip"] = "chroma",
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Full-resolution output: the source's own CIELAB L with the prediction's chroma.

    ``pred_rgb``: predicted colour frames at working resolution, numpy ``(T, h, w, 3)``
    (uint8 or float 0..1) or torch ``(T, 3, h, w)`` float 0..1; a single frame is accepted.
    ``source``: the input frames at full resolution, ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8
    (colour or grey; only its L is used). The predicted a/b are upsampled bilinearly to
    ``(H, W)`` (antialiased when the prediction is larger) and combined with the source's L.

    ``gamut="chroma"`` (default) pulls out-of-gamut pixels toward grey at constant L, so
    L is preserved exactly (up to uint8 rounding); ``"clip"`` clips RGB like ``lab2rgb``
    (which can change L of saturated pixels). Returns uint8 RGB shaped like ``source``.
    Frames are processed one at a time, so memory stays at a few full-resolution frames;
    the maths runs on ``device`` (default: the prediction tensor's device, else the CPU).
    """
    if gamut not in ("chroma", "clip"):
        raise ValueError(f"gamut must be 'chroma' or 'clip', got {gamut!r}")
    if not isinstance(source, np.ndarray) or source.dtype != np.uint8:
        raise ValueError("source must be a uint8 numpy array (T, H, W, 3) or (H, W, 3)")
    if source.ndim not in (3, 4):
        raise ValueError(f"source must be (H, W, 3) or (T, H, W, 3); got shape {source.shape}")
    _check_channels(source, -1, "source")
    pred = _pred_to_tensor(pred_rgb)
    dev = torch.device(device) if device is not None else pred.device
    single = source.ndim == 3
    src = source[None] if single else source
    if pred.shape[0] != src.shape[0]:
        raise ValueError(
            f"pred_rgb has {pred.shape[0]} frames but source has {src.shape[0]}; they must match"
        )
    height, width = src.shape[1:3]
    out = np.empty_like(src)
    for i in range(src.shape[0]):
        ab = _rgb_to_lab_t(pred[i : i + 1].to(dev), dim=1)[:, 1:]
        downsampling = ab.shape[-2] > height or ab.shape[-1] > width
        ab = F.interpolate(ab, size=(height, width), mode="bilinear", align_corners=False, antialias=downsampling)
        s = torch.from_numpy(src[i]).to(dev).float().div_(255.0)
        L = 116.0 * _lab_f(_luminance_t(s, dim=-1)) - 16.0  # (H, W, 1)
        lab = torch.cat([rearrange(L, "h w c -> 1 c h w"), ab], dim=1)
        lin = _lab_to_linear_t(lab, dim=1)
        if gamut == "chroma":
            flat_lin = rearrange(lin, "1 c h w -> (h w) c")
            bad = ((flat_lin < -1e-6) | (flat_lin > 1.0 + 1e-6)).any(dim=1)
            if bool(bad.any()):
                flat_lab = rearrange(lab, "1 c h w -> (h w) c").clone()
                idx = bad.nonzero().squeeze(1)
                flat_lab[idx, 1:] = _reduce_chroma_into_gamut(flat_lab[idx, 0], flat_lab[idx, 1:])
                flat_lin[idx] = _lab_to_linear_t(flat_lab[idx], dim=1)
                lin = rearrange(flat_lin, "(h w) c -> 1 c h w", h=height, w=width)
        rgb = linear_to_srgb(lin).clamp(0.0, 1.0)
        out[i] = rearrange(torch.round(rgb * 255.0).to(torch.uint8), "1 c h w -> h w c").cpu().numpy()
    return out[0] if single else out


# --------------------------------------------------------------------------------------
# working resolution
# --------------------------------------------------------------------------------------


def fit_size(
    height: int,
    width: int,
    resolution: int = 256,
    multiple: int = 8,
    side: Literal["short", "long"] = "short",
) -> tuple[int, int]:
    """Working size for a ``height x width`` video: aspect kept, both sides multiples of ``multiple``.

    ``side="short"`` (default) makes the short side equal ``resolution`` (the scale the model
    was trained at: 256² crops); ``"long"`` makes the long side equal it (fewer pixels). The
    other side is rounded to the nearest multiple (at least ``multiple``), so the aspect error
    is at most ``multiple / 2`` pixels. Small videos are upscaled.
    """
    for name, v in (("height", height), ("width", width), ("resolution", resolution), ("multiple", multiple)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if resolution % multiple:
        raise ValueError(f"resolution must be a multiple of {multiple}, got {resolution}")
    if side not in ("short", "long"):
        raise ValueError(f"side must be 'short' or 'long', got {side!r}")
    ref = min(height, width) if side == "short" else max(height, width)
    scale = resolution / ref

    def snap(v: int) -> int:
        return max(multiple, int(round(v * scale / multiple)) * multiple)

    h2, w2 = snap(height), snap(width)
    if ref == height:
        h2 = resolution
    if ref == width:
        w2 = resolution
    return h2, w2


def resize(
    frames: torch.Tensor,
    size: tuple[int, int],
    mode: Literal["bilinear", "bicubic", "area", "nearest"] = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize channel-first float frames ``(..., C, H, W)`` to ``size = (h, w)``.

    Antialiased when shrinking (torch's ``antialias=True``, like PIL), so downscaled
    1080p frames do not alias. Any number of leading dimensions is accepted.
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim < 3:
        raise ValueError("frames must be a tensor (..., C, H, W) with at least 3 dimensions")
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {tuple(size)}")
    if tuple(frames.shape[-2:]) == (h, w):
        return frames
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:])
    dtype = x.dtype
    if not x.is_floating_point():
        x = x.float()
    kwargs: dict = {}
    if mode in ("bilinear", "bicubic"):
        kwargs = {"align_corners": False, "antialias": antialias}
    y = F.interpolate(x, size=(h, w), mode=mode, **kwargs)
    if not dtype.is_floating_point:
        y = y.round().clamp(0, torch.iinfo(dtype).max).to(dtype)
    return y.reshape(*lead, *y.shape[-3:])


def resize_frames(frames: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize channel-last uint8/float frames ``(..., H, W, C)`` (numpy) to ``size = (h, w)``."""
    if not isinstance(frames, np.ndarray) or frames.ndim < 3:
        raise ValueError("frames must be a numpy array (..., H, W, C)")
    t = torch.from_numpy(np.ascontiguousarray(frames))
    t = torch.movedim(t, -1, -3)
    out = resize(t, size, mode=mode)  # type: ignore[arg-type]
    return torch.movedim(out, -3, -1).contiguous().numpy()


def to_working_resolution(
    frames: torch.Tensor,
    resolution: int = 256,
    multiple: int = 8,
    side: Literal["short", "long"] = "short",
) -> torch.Tensor:
    """Resize channel-first frames ``(..., C, H, W)`` to :func:`fit_size` without distortion."""
    if not isinstance(frames, torch.Tensor) or frames.ndim < 3:
        raise ValueError("frames must be a tensor (..., C, H, W)")
    size = fit_size(int(frames.shape[-2]), int(frames.shape[-1]), resolution, multiple, side)
    return resize(frames, size)
