"""Cross-Clip Fusion (CCF): clip layouts and the fusion maths (paper §3.4, eq. 8).

A video of T frames is too long for one UNet pass, so inference runs on clips of
N^f frames and fuses, for every frame, the results of all clips holding it.
This module is pure (torch + stdlib, no model code):

* layouts say which frame sits in which slot of which clip:
  :func:`skip_window_clips` (the paper), :func:`sliding_window_clips` and
  :func:`chunked_clips` (ablations), or :func:`make_layout` by name;
* :class:`ClipLayout` holds the layout and its slot weights, and fuses per-clip
  tensors into per-frame tensors (:meth:`ClipLayout.fuse`) and back
  (:meth:`ClipLayout.scatter`);
* :class:`FusionAccumulator` does the same fusion streamed over chunks of clips,
  so bounded-memory inference never holds every clip's result at once.

Conventions: ``clips[k, s]`` is the frame index in slot ``s`` of clip ``k``;
frames inside a clip are in increasing time order; ``weights[k, s]`` is the
raw (unnormalised) weight of that occurrence. A frame's fused value is
``sum(w * x) / sum(w)`` over all of its (clip, slot) occurrences, so a frame
that a shifted-back clip holds twice in one interval counts twice (see
``docs/ccf.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange

__all__ = [
    "ClipLayout",
    "FusionAccumulator",
    "Mode",
    "Weighting",
    "chunked_clips",
    "make_layout",
    "max_interval_for",
    "skip_window_clips",
    "sliding_window_clips",
    "slot_weights",
]

Mode = Literal["skip", "sliding", "none"]
Weighting = Literal["distance", "uniform"]
MODES: tuple[str, ...] = ("skip", "sliding", "none")
WEIGHTINGS: tuple[str, ...] = ("distance", "uniform")


# --------------------------------------------------------------------------- checks


def _check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise one clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sums are kept in at least float32 so fp16/bf16 inputs do not lose weight mass."""
    if not dtype.is_floating_point:
        raise ValueError(f"fusion needs a floating-point dtype, got {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- weights


def slot_weights(clip_frames: int, weighting: Weighting = "distance") -> torch.Tensor:
    """Raw weight of each slot of a clip of ``clip_frames`` frames, shape ``(N,)``.

    ``"distance"`` is eq. 8: ``w(s) = N/2 - |s - c|`` with ``c = (N - 1)/2``, both
    in slots, so the edge slots get 0.5 and the centre slots N/2 (always > 0).
    ``"uniform"`` is the direct-averaging ablation (every slot weighs 1).
    """
    n = _check_positive_int("clip_frames", clip_frames)
    _check_choice("weighting", weighting, WEIGHTINGS)
    if weighting == "uniform":
        return torch.ones(n, dtype=torch.float32)
    slots = torch.arange(n, dtype=torch.float64)
    centre = (n - 1) / 2
    return (n / 2 - (slots - centre).abs()).to(torch.float32)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class ClipLayout:
    """Which frame sits in which clip slot, with the slot weights used for fusion.

    Attributes:
        num_frames: T, the number of frames of the video.
        clips: ``(n_clips, N)`` int64, frame index per slot (increasing in a clip).
        weights: ``(n_clips, N)`` float32, raw weight per occurrence (>= 0; every
            frame has a positive total).
        intervals: the frame spacings ``d`` the layout uses, e.g. ``(1, 2, 4)``.
        clip_intervals: ``(n_clips,)`` int64, the spacing of each clip's frames.
        mode: ``"skip"``, ``"sliding"`` or ``"none"`` (how it was built).
        weighting: ``"distance"`` or ``"uniform"``.
    """

    num_frames: int
    clips: torch.Tensor
    weights: torch.Tensor
    intervals: tuple[int, ...]
    clip_intervals: torch.Tensor
    mode: str = "skip"
    weighting: str = "distance"

    def __post_init__(self) -> None:
        t = _check_positive_int("num_frames", self.num_frames)
        c, w = self.clips, self.weights
        if c.dim() != 2 or c.dtype != torch.int64 or c.shape[0] < 1 or c.shape[1] < 1:
            raise ValueError(f"clips must be a non-empty (n_clips, N) int64 tensor, got {tuple(c.shape)} {c.dtype}")
        if w.shape != c.shape or not w.dtype.is_floating_point:
            raise ValueError(
                f"weights must be a float tensor shaped like clips {tuple(c.shape)}, got {tuple(w.shape)} {w.dtype}"
            )
        if self.clip_intervals.shape != (c.shape[0],):
            raise ValueError(f"clip_intervals must have shape ({c.shape[0]},), got {tuple(self.clip_intervals.shape)}")
        if int(c.min()) < 0 or int(c.max()) >= t:
            raise ValueError(f"clip frame indices must lie in [0, {t - 1}], got [{int(c.min())}, {int(c.max())}]")
        if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise ValueError("slot weights must be finite and >= 0")
        totals = torch.zeros(t, dtype=torch.float64).index_add_(0, c.flatten(), w.flatten().double())
        missing = (totals <= 0).nonzero().flatten()
        if missing.numel():
            raise ValueError(f"every frame needs a positive total weight; frame {int(missing[0])} has none")

    # -- sizes ---------------------------------------------------------------

    @property
    def n_clips(self) -> int:
        """Number of clips."""
        return int(self.clips.shape[0])

    @property
    def clip_frames(self) -> int:
        """Frames per clip (N^f, or T when the video is shorter than N^f)."""
        return int(self.clips.shape[1])

    @property
    def fuses_features(self) -> bool:
        """Whether exact mode should fuse TDA features across clips (False for the
        no-CCF ablation, whose clips run independently and are only stitched)."""
        return self.mode != "none"

    @property
    def frame_evaluations(self) -> int:
        """UNet frame evaluations per denoising step (n_clips * N, without CFG doubling)."""
        return self.n_clips * self.clip_frames

    # -- weights -------------------------------------------------------------

    def weight_totals(self) -> torch.Tensor:
        """``(T,)`` float32: the sum of raw weights over each frame's occurrences."""
        return torch.zeros(self.num_frames, dtype=torch.float32).index_add_(
            0, self.clips.flatten(), self.weights.flatten().float()
        )

    def normalised_weights(self) -> torch.Tensor:
        """``(n_clips, N)`` weights such that each frame's occurrences sum to 1."""
        return self.weights.float() / self.weight_totals()[self.clips]

    # -- fusion --------------------------------------------------------------

    def _check_per_clip(self, per_clip: torch.Tensor) -> None:
        lead = (self.n_clips, self.clip_frames)
        if per_clip.dim() < 2 or tuple(per_clip.shape[:2]) != lead:
            raise ValueError(f"per-clip tensor must start with shape {lead}, got {tuple(per_clip.shape)}")

    def accumulator(self, trailing_shape: Sequence[int] = (), dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> FusionAccumulator:
        """A fresh :class:`FusionAccumulator` for this layout's frames."""
        return FusionAccumulator(self.num_frames, trailing_shape, dtype, device)

    def fuse(self, per_clip: torch.Tensor) -> torch.Tensor:
        """Weighted average per frame: ``(n_clips, N, ...) -> (T, ...)`` (eq. 8).

        Works for any trailing dims, any float dtype (summed in >= float32, returned
        in the input dtype) and any device.
        """
        self._check_per_clip(per_clip)
        acc = self.accumulator(per_clip.shape[2:], per_clip.dtype, per_clip.device)
        acc.add(self.clips, per_clip, self.weights)
        return acc.result()

    def scatter(self, per_frame: torch.Tensor) -> torch.Tensor:
        """Gather per-frame values into clip slots: ``(T, ...) -> (n_clips, N, ...)``."""
        if per_frame.dim() < 1 or per_frame.shape[0] != self.num_frames:
            raise ValueError(
                f"per-frame tensor must have {self.num_frames} frames first, got shape {tuple(per_frame.shape)}"
            )
        idx = self.clips.to(per_frame.device)
        return per_frame[idx]

    def fuse_and_scatter(self, per_clip: torch.Tensor) -> torch.Tensor:
        """Fuse, then write the fused value back to every slot (exact-mode TDA step)."""
        return self.scatter(self.fuse(per_clip))

    def chunks(self, max_clips: int) -> Iterator[slice]:
        """Consecutive slices of at most ``max_clips`` clips covering all clips in order."""
        step = _check_positive_int("max_clips", max_clips)
        for start in range(0, self.n_clips, step):
            yield slice(start, min(start + step, self.n_clips))


# --------------------------------------------------------------------------- accumulator


class FusionAccumulator:
    """Streaming eq. 8: add chunks of clips, then read the fused per-frame tensor.

    Keeps two buffers, ``sum(w * x)`` of shape ``(T, *trailing)`` and ``sum(w)`` of
    shape ``(T,)``, in at least float32. Adding all clips of a layout (in any
    chunking, in clip order) gives exactly :meth:`ClipLayout.fuse` on CPU.
    """

    def __init__(self, num_frames: int, trailing_shape: Sequence[int] = (),
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        self.num_frames = _check_positive_int("num_frames", num_frames)
        self.trailing_shape = tuple(int(s) for s in trailing_shape)
        self.dtype = dtype
        acc_dtype = _accumulation_dtype(dtype)
        self._sums = torch.zeros((self.num_frames, *self.trailing_shape), dtype=acc_dtype, device=device)
        self._totals = torch.zeros(self.num_frames, dtype=acc_dtype, device=device)

    @property
    def device(self) -> torch.device:
        return self._sums.device

    def add(self, clip_indices: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> None:
        """Accumulate ``values`` ``(k, N, *trailing)`` at frames ``clip_indices`` ``(k, N)``
        with raw ``weights`` ``(k, N)``."""
        if clip_indices.dim() != 2:
            raise ValueError(f"clip_indices must be (k, N), got shape {tuple(clip_indices.shape)}")
        expected = (*clip_indices.shape, *self.trailing_shape)
        if tuple(values.shape) != expected:
            raise ValueError(f"values must have shape {expected}, got {tuple(values.shape)}")
        if tuple(weights.shape) != tuple(clip_indices.shape):
            raise ValueError(f"weights must have shape {tuple(clip_indices.shape)}, got {tuple(weights.shape)}")
        if clip_indices.numel() == 0:
            return
        lo, hi = int(clip_indices.min()), int(clip_indices.max())
        if lo < 0 or hi >= self.num_frames:
            raise ValueError(f"frame indices must lie in [0, {self.num_frames - 1}], got [{lo}, {hi}]")
        acc_dtype = self._sums.dtype
        idx = clip_indices.to(self.device, torch.int64).flatten()
        w = weights.to(self.device, acc_dtype).flatten()
        x = rearrange(values.to(self.device, acc_dtype), "k n ... -> (k n) ...")
        w_b = w.reshape(-1, *([1] * len(self.trailing_shape)))
        self._sums.index_add_(0, idx, x * w_b)
        self._totals.index_add_(0, idx, w)

    def result(self) -> torch.Tensor:
        """The fused ``(T, *trailing)`` tensor in the accumulator's dtype.

        Raises ValueError if some frame has received no weight yet (a missing chunk).
        """
        missing = (self._totals <= 0).nonzero().flatten()
        if missing.numel():
            raise ValueError(
                f"{missing.numel()} of {self.num_frames} frames have no fused value yet "
                f"(first: frame {int(missing[0])}); add every chunk before result()"
            )
        shape = (self.num_frames, *([1] * len(self.trailing_shape)))
        return (self._sums / self._totals.reshape(shape)).to(self.dtype)


# --------------------------------------------------------------------------- builders


def _window_starts(length: int, size: int, stride: int) -> torch.Tensor:
    """Starts of windows of ``size`` over ``length`` items stepping by ``stride``;
    a last window that would run past the end is shifted back to end at ``length``."""
    if length <= size:
        return torch.zeros(1, dtype=torch.int64)
    starts = list(range(0, length - size, stride)) + [length - size]
    return torch.tensor(starts, dtype=torch.int64)


def _build(num_frames: int, rows: list[torch.Tensor], intervals: list[torch.Tensor],
           used: tuple[int, ...], weighting: str, mode: str,
           owner_only: bool = False) -> ClipLayout:
    clips = torch.cat(rows, dim=0)
    w = slot_weights(clips.shape[1], weighting).expand_as(clips).clone()
    if owner_only:
        # Each frame keeps only its first occurrence (in clip order): clip-by-clip stitching.
        flat = clips.flatten()
        first = torch.full((num_frames,), flat.numel(), dtype=torch.int64)
        first.scatter_reduce_(0, flat, torch.arange(flat.numel()), reduce="amin")
        keep = first[flat] == torch.arange(flat.numel())
        w = w * keep.reshape(clips.shape).to(w.dtype)
    return ClipLayout(num_frames=num_frames, clips=clips, weights=w, intervals=used,
                      clip_intervals=torch.cat(intervals), mode=mode, weighting=weighting)


def max_interval_for(num_frames: int, clip_frames: int = 8, max_interval: int | None = None) -> int:
    """D: the largest power of two with ``D * clip_frames <= num_frames`` (at least 1),
    capped by ``max_interval`` (rounded down to a power of two)."""
    t = _check_positive_int("num_frames", num_frames)
    n = _check_positive_int("clip_frames", clip_frames)
    limit = max(1, t // n)
    if max_interval is not None:
        limit = min(limit, _check_positive_int("max_interval", max_interval))
    return 1 << (limit.bit_length() - 1)


def skip_window_clips(num_frames: int, clip_frames: int = 8, max_interval: int | None = None,
                      weighting: Weighting = "distance") -> ClipLayout:
    """The paper's skip-window layout.

    For each interval ``d`` in ``1, 2, 4, ..., D`` (see :func:`max_interval_for`) and each
    residue ``r < d``, the frames ``r, r+d, r+2d, ...`` are cut into consecutive clips
    of ``clip_frames``; a last short clip is shifted back to be full, so it overlaps
    the previous clip of the same sequence. Clips are ordered by (d, r, position).
    If ``num_frames < clip_frames`` the layout is a single clip of all ``num_frames``.
    """
    t = _check_positive_int("num_frames", num_frames)
    n = min(_check_positive_int("clip_frames", clip_frames), t)
    _check_choice("weighting", weighting, WEIGHTINGS)
    big_d = max_interval_for(t, n, max_interval)
    slots = torch.arange(n, dtype=torch.int64)
    rows: list[torch.Tensor] = []
    ivals: list[torch.Tensor] = []
    used: list[int] = []
    d = 1
    while d <= big_d:
        # Residues r < T mod d have one frame more than the others; each group
        # shares its window starts, so build a group with one broadcast.
        long_len, n_long = -(-t // d), t % d or d
        for residues, length in ((torch.arange(0, n_long), long_len), (torch.arange(n_long, d), t // d)):
            if residues.numel() == 0:
                continue
            starts = _window_starts(length, n, n)
            pos = starts[:, None] + slots[None, :]  # (clips per sequence, N), in sequence steps
            frames = residues[:, None, None] + d * pos[None]  # (residues, clips, N)
            rows.append(rearrange(frames, "r c n -> (r c) n"))
            ivals.append(torch.full((frames.shape[0] * frames.shape[1],), d, dtype=torch.int64))
        used.append(d)
        d *= 2
    return _build(t, rows, ivals, tuple(used), weighting, "skip")


def sliding_window_clips(num_frames: int, clip_frames: int = 8, stride: int | None = None,
                         weighting: Weighting = "distance") -> ClipLayout:
    """Sliding-window ablation: consecutive clips starting every ``stride`` frames
    (default ``clip_frames // 2``, at least 1), the last one shifted back to end at T."""
    t = _check_positive_int("num_frames", num_frames)
    n = min(_check_positive_int("clip_frames", clip_frames), t)
    step = max(1, clip_frames // 2) if stride is None else _check_positive_int("stride", stride)
    if step > clip_frames:
        raise ValueError(f"stride must be <= clip_frames ({clip_frames}) so no frame is skipped, got {step}")
    _check_choice("weighting", weighting, WEIGHTINGS)
    starts = _window_starts(t, n, step)
    clips = starts[:, None] + torch.arange(n)[None, :]
    return _build(t, [clips], [torch.ones(len(starts), dtype=torch.int64)], (1,), weighting, "sliding")


def chunked_clips(num_frames: int, clip_frames: int = 8, weighting: Weighting = "distance") -> ClipLayout:
    """No-CCF ablation: non-overlapping consecutive clips, the last shifted back to be full.

    Each frame's result comes from exactly one clip: the first clip holding it (so the
    shifted-back last clip contributes only its new frames; its overlap slots weigh 0).
    """
    t = _check_positive_int("num_frames", num_frames)
    n = min(_check_positive_int("clip_frames", clip_frames), t)
    _check_choice("weighting", weighting, WEIGHTINGS)
    starts = _window_starts(t, n, n)
    clips = starts[:, None] + torch.arange(n)[None, :]
    return _build(t, [clips], [torch.ones(len(starts), dtype=torch.int64)], (1,), weighting, "none",
                  owner_only=True)


def make_layout(num_frames: int, clip_frames: int = 8, mode: Mode = "skip",
                weighting: Weighting = "distance", max_interval: int | None = None,
                stride: int | None = None) -> ClipLayout:
    """Build a layout by name: ``"skip"`` (paper), ``"sliding"`` or ``"none"`` (ablations).

    ``max_interval`` only applies to ``"skip"`` and ``stride`` only to ``"sliding"``.
    """
    _check_choice("mode", mode, MODES)
    if mode == "skip":
        return skip_window_clips(num_frames, clip_frames, max_interval, weighting)
    if mode == "sliding":
        return sliding_window_clips(num_frames, clip_frames, stride, weighting)
    return chunked_clips(num_frames, clip_frames, weighting)
