"""Training clips of N^f frames cut from the videos of a manifest.

Each item is ``{"pixel_values": (F, 3, R, R) float in [-1, 1] RGB, "caption": str, "index": int}``.

Sampling, per item: a stride is drawn from ``stride`` (an int, or an inclusive ``(lo, hi)``
range), a start is drawn so that the whole clip lies inside the entry's ``start``/``end``
window, and a square crop of side ``min(H, W)`` (centred, or random with ``random_crop``) is
resized to ``resolution``.  When a video is too short, the stride is lowered first (down to 1)
and, if it is still too short, the last frame is repeated.

Randomness comes only from ``(seed, epoch, index)``, never from worker or process state, so a
sample is the same whatever the number of workers or ranks.  Videos that cannot be decoded are
skipped: a warning is logged once, the entry is marked bad in a table shared with the loader's
worker processes, and another entry (a deterministic choice) is returned instead.  Skipping has a
limit: once ``unreadable_min_tried`` (20) distinct entries were tried, more than
``max_unreadable_fraction`` (5 %) of them unreadable is an error (``TooManyUnreadableError``), so a
broken mount or a wrong manifest does not train on a small remainder of the data.

Videos are decoded with decord; one that decord cannot open or read (MPEG-TS, raw H.264, GIF, or
without decord installed) is read with PyAV instead (slower: it decodes from the start), and only
counts as unreadable when both fail.
"""

from __future__ import annotations

import logging
import math
import operator
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

from lc4.data.manifest import ManifestEntry, load_manifest

__all__ = [
    "StrideArg",
    "UnreadableMediaError",
    "TooManyUnreadableError",
    "ClipDataset",
    "VideoClipDataset",
    "normalize_stride",
    "clip_rng",
    "frame_window",
    "plan_clip",
    "frames_to_tensor",
]

log = logging.getLogger(__name__)

StrideArg = int | tuple[int, int]
_RETRY_STREAM = 1  # extra seed word for the retry order, so it differs from the clip stream


class UnreadableMediaError(Exception):
    """A video or image that cannot be decoded (corrupt, truncated, empty, unsupported)."""


class TooManyUnreadableError(ValueError):
    """More than the allowed share of the items tried could not be read."""


# --------------------------------------------------------------------------- pure helpers


def normalize_stride(stride: StrideArg | Sequence[int]) -> tuple[int, int]:
    """An int or an inclusive ``(lo, hi)`` pair, as ``(lo, hi)`` with ``1 <= lo <= hi``."""
    if isinstance(stride, (int, np.integer)) and not isinstance(stride, bool):
        lo = hi = int(stride)
    elif isinstance(stride, Sequence) and not isinstance(stride, str) and len(stride) == 2:
        lo, hi = (operator.index(s) for s in stride)
    else:
        raise ValueError(f"stride must be an int or a (min, max) pair of ints, got {stride!r}")
    if lo < 1 or hi < lo:
        raise ValueError(f"stride must satisfy 1 <= min <= max, got {stride!r}")
    return lo, hi


def clip_rng(seed: int, epoch: int, index: int, *stream: int) -> np.random.Generator:
    """A generator seeded from ``(seed, epoch, index)`` only: the same in any worker or rank."""
    return np.random.default_rng([seed, epoch, index, *stream])


def frame_window(num_video_frames: int, fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    """``[first, stop)`` frames shown within ``[start, end)`` seconds (frame i is at ``i / fps``)."""
    first, stop = 0, num_video_frames
    if start is not None or end is not None:
        if not (math.isfinite(fps) and fps > 0):
            raise UnreadableMediaError(f"no usable frame rate ({fps}) to locate start/end")
        if start is not None:
            first = max(0, math.ceil(start * fps - 1e-6))
        if end is not None:
            stop = min(num_video_frames, math.ceil(end * fps - 1e-6))
    if first >= num_video_frames:
        raise UnreadableMediaError(f"start {start} s is after the video's end "
                                   f"({num_video_frames} frames at {fps:g} fps)")
    return first, max(stop, first + 1)


def plan_clip(
    first: int,
    stop: int,
    num_frames: int,
    stride: tuple[int, int],
    random_start: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Frame indices of one clip inside ``[first, stop)``.

    The stride is drawn uniformly from the inclusive range, capped so that the clip fits; a
    window shorter than ``num_frames`` gets stride 1 and its last frame repeated.  Without
    ``random_start`` the clip is centred in the window.
    """
    if stop <= first:
        raise ValueError(f"empty frame window [{first}, {stop})")
    length = stop - first
    lo, hi = stride
    max_fit = (length - 1) // (num_frames - 1) if num_frames > 1 else hi
    step = int(rng.integers(lo, min(hi, max_fit) + 1)) if max_fit >= lo else max(1, max_fit)
    span = (num_frames - 1) * step + 1
    slack = max(0, length - span)
    offset = int(rng.integers(0, slack + 1)) if random_start else slack // 2
    indices = first + offset + step * np.arange(num_frames)
    return np.minimum(indices, stop - 1)


def frames_to_tensor(
    frames: np.ndarray, resolution: int, crop: tuple[float, float] = (0.5, 0.5)
) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` RGB → float ``(F, 3, R, R)`` in [-1, 1].

    Same as resizing the short side to ``R`` and cropping ``R × R``; the square is cut first
    (at fractional position ``crop = (fy, fx)``, 0.5 = centre) so large frames cost less.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {tuple(frames.shape)}")
    _, h, w, _ = frames.shape
    side = min(h, w)
    top = round((h - side) * float(crop[0]))
    left = round((w - side) * float(crop[1]))
    square = np.ascontiguousarray(frames[:, top : top + side, left : left + side])
    x = rearrange(torch.from_numpy(square), "f h w c -> f c h w").float().div_(127.5).sub_(1.0)
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=side > resolution)
    return x.clamp_(-1.0, 1.0)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- base dataset


class ClipDataset(Dataset):
    """Seeding, epochs and the skip-and-retry policy shared by the clip datasets.

    Items may be requested as ``ds[index]`` (uses :meth:`set_epoch`'s epoch) or as
    ``ds[(index, epoch)]`` (what :class:`lc4.data.datamodule.EpochShardSampler` yields, so the
    epoch reaches persistent workers without shared state).  Subclasses implement
    :meth:`_load` and :meth:`_item_name`.
    """

    #: Tells samplers that ``(index, epoch)`` keys are understood.
    accepts_epoch_index = True
    media_kind = "item"

    def __init__(
        self,
        num_items: int,
        *,
        num_frames: int,
        resolution: int,
        stride: StrideArg,
        random_start: bool,
        random_crop: bool,
        seed: int,
        max_unreadable_fraction: float = 0.05,
        unreadable_min_tried: int = 20,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"{type(self).__name__}: no items to load")
        self.num_frames = _check_positive("num_frames", num_frames)
        self.resolution = _check_positive("resolution", resolution)
        self.stride = normalize_stride(stride)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.random_start = bool(random_start)
        self.random_crop = bool(random_crop)
        if isinstance(max_unreadable_fraction, bool) or not 0.0 <= float(max_unreadable_fraction) <= 1.0:
            raise ValueError("max_unreadable_fraction must be in [0, 1] (1 = no limit), "
                             f"got {max_unreadable_fraction!r}")
        self.max_unreadable_fraction = float(max_unreadable_fraction)
        self.unreadable_min_tried = _check_positive("unreadable_min_tried", unreadable_min_tried)
        #: raise TooManyUnreadableError from __getitem__; VideoDataModule turns it off when the
        #: LightningModule checks the limit itself with every rank agreeing (LC4Module does)
        self.raise_on_limit = True
        self._num_items = num_items
        # Shared with DataLoader workers (also persistent ones): writes here are seen there.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._bad = torch.zeros(num_items, dtype=torch.bool).share_memory_()
        self._tried = torch.zeros(num_items, dtype=torch.bool).share_memory_()
        self._warned: set[int] = set()

    # -- subclass interface
    @abstractmethod
    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Return ``{"pixel_values", "caption"}`` for item ``index`` or raise UnreadableMediaError."""

    @abstractmethod
    def _item_name(self, index: int) -> str:
        """Human-readable name (a path) of item ``index`` for messages."""

    # -- epochs and skipping
    def __len__(self) -> int:
        return self._num_items

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used by integer keys; workers already started see it too."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    @property
    def num_skipped(self) -> int:
        """How many items were found unreadable (in this process or its loader workers)."""
        return int(self._bad.sum().item())

    @property
    def skipped_paths(self) -> list[str]:
        return [self._item_name(int(i)) for i in torch.nonzero(self._bad).flatten()]

    @property
    def num_tried(self) -> int:
        """How many distinct items were tried (read or found unreadable), in this process or its workers."""
        return int(self._tried.sum().item())

    def unreadable_error(self) -> str | None:
        """The error message when too many of the items tried were unreadable, else None.

        The limit applies once ``unreadable_min_tried`` distinct items were tried: more than
        ``max_unreadable_fraction`` of them unreadable is too many.
        """
        bad, tried = self.num_skipped, self.num_tried
        if not bad or tried < self.unreadable_min_tried or bad <= self.max_unreadable_fraction * tried:
            return None
        paths = list(dict.fromkeys(self.skipped_paths))  # a file may be listed more than once
        shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
        return (f"{bad} of the {tried} {self.media_kind}s tried so far are unreadable ({100 * bad / tried:.1f} %, "
                f"more than max_unreadable_fraction = {100 * self.max_unreadable_fraction:g} %), e.g. {shown}; "
                "repair them or drop them from the data, or raise data.max_unreadable_fraction (1 = no limit)")

    def check_unreadable(self) -> None:
        """Raise ``TooManyUnreadableError`` when :meth:`unreadable_error` has a message."""
        message = self.unreadable_error()
        if message:
            raise TooManyUnreadableError(message)

    def _mark_bad(self, index: int, reason: Exception) -> None:
        self._bad[index] = True
        if index not in self._warned:
            self._warned.add(index)
            log.warning("skipping unreadable %s %s: %s (%d skipped so far)", self.media_kind,
                        self._item_name(index), reason, self.num_skipped)

    def _parse_key(self, key: Any) -> tuple[int, int]:
        if isinstance(key, (tuple, list)) and len(key) == 2:
            index, epoch = operator.index(key[0]), operator.index(key[1])
        else:
            index, epoch = operator.index(key), self.epoch
        n = self._num_items
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return index % n, epoch

    def _candidates(self, index: int, epoch: int) -> Iterator[int]:
        """The requested item, then every other item in a (seed, epoch, index)-fixed order."""
        yield index
        order = clip_rng(self.seed, epoch, index, _RETRY_STREAM).permutation(self._num_items)
        yield from (int(i) for i in order if i != index)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, epoch = self._parse_key(key)
        for candidate in self._candidates(index, epoch):
            if self._bad[candidate]:
                continue
            self._tried[candidate] = True
            try:
                sample = self._load(candidate, clip_rng(self.seed, epoch, index))
            except UnreadableMediaError as exc:
                self._mark_bad(candidate, exc)
                if self.raise_on_limit:
                    self.check_unreadable()
                continue
            if self.raise_on_limit and bool(self._bad.any()):  # a good read also changes the share
                self.check_unreadable()
            sample["index"] = candidate
            return sample
        shown = ", ".join(self.skipped_paths[:3])
        raise ValueError(f"all {self._num_items} {self.media_kind}s of {type(self).__name__} are "
                         f"unreadable (e.g. {shown}); check them with ffprobe")

    def _crop(self, rng: np.random.Generator) -> tuple[float, float]:
        fy, fx = rng.random(2)
        return (float(fy), float(fx)) if self.random_crop else (0.5, 0.5)


# --------------------------------------------------------------------------- videos


def read_video_clip(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    stride: tuple[int, int],
    random_start: bool,
    rng: np.random.Generator,
    start: float | None = None,
    end: float | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one planned clip: ``(frames uint8 (F, H, W, 3), frame indices)``.

    decord first; when decord cannot open or decode the file (or is not installed), PyAV, with the
    same draw of the clip (``rng`` is rewound). ``UnreadableMediaError`` only when both fail.
    """
    state = rng.bit_generator.state
    try:
        return _read_clip_decord(path, num_frames=num_frames, stride=stride, random_start=random_start,
                                 rng=rng, start=start, end=end, threads=threads)
    except (UnreadableMediaError, ImportError) as exc:
        first = exc
    rng.bit_generator.state = state
    try:
        out = _read_clip_pyav(path, num_frames=num_frames, stride=stride, random_start=random_start,
                              rng=rng, start=start, end=end, threads=threads)
    except UnreadableMediaError as exc:
        raise UnreadableMediaError(f"decord: {first}; PyAV: {exc}") from None
    if str(path) not in _PYAV_NOTED:
        _PYAV_NOTED.add(str(path))
        log.info("decord could not read %s (%s); read it with PyAV", path, first)
    return out


_PYAV_NOTED: set[str] = set()


def _read_clip_decord(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    stride: tuple[int, int],
    random_start: bool,
    rng: np.random.Generator,
    start: float | None,
    end: float | None,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    import decord  # ImportError: read_video_clip falls back to PyAV

    try:
        reader = decord.VideoReader(str(path), num_threads=threads, ctx=decord.cpu(0))
        count, fps = len(reader), float(reader.get_avg_fps())
    except Exception as exc:  # decord raises RuntimeError / DECORDError for bad files
        raise UnreadableMediaError(_short(exc)) from None
    if count < 1:
        raise UnreadableMediaError("no video frames")
    first, stop = frame_window(count, fps, start, end)
    indices = plan_clip(first, stop, num_frames, stride, random_start, rng)
    unique, inverse = np.unique(indices, return_inverse=True)
    try:
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except Exception as exc:
        raise UnreadableMediaError(f"decoding failed: {_short(exc)}") from None
    finally:
        del reader
    if frames.ndim != 4 or frames.shape[0] != len(unique) or frames.shape[-1] != 3:
        raise UnreadableMediaError(f"decoder returned frames of shape {tuple(frames.shape)}")
    return frames[inverse], indices


def _read_clip_pyav(
    path: str | os.PathLike[str],
    *,
    num_frames: int,
    stride: tuple[int, int],
    random_start: bool,
    rng: np.random.Generator,
    start: float | None,
    end: float | None,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The same clip as decord would give, decoded with PyAV from the first frame on.

    The frame count is the container's, else the number of video packets; frame i is the i-th
    decoded frame in presentation order, as in decord. Should decoding end before a planned index
    (a count that was too high), the last decoded frame stands in for the missing ones.
    """
    try:
        import av
    except ImportError:
        raise UnreadableMediaError("PyAV is not installed (pip install av)") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnreadableMediaError("no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else float("nan")
            count = int(stream.frames or 0)
            if count < 1:  # not in the header (MPEG-TS, raw streams): count the packets
                count = sum(1 for packet in container.demux(stream) if packet.size)
        if count < 1:
            raise UnreadableMediaError("no video frames")
        first, stop = frame_window(count, fps, start, end)
        indices = plan_clip(first, stop, num_frames, stride, random_start, rng)
        wanted = set(int(i) for i in indices)
        last_needed = max(wanted)
        with av.open(str(path)) as container:  # afresh: raw streams cannot seek back after counting
            stream = container.streams.video[0]
            stream.thread_count = max(1, int(threads))
            got: dict[int, np.ndarray] = {}
            last = None
            for i, frame in enumerate(container.decode(stream)):
                last = frame
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last_needed:
                    break
            if last is None:
                raise UnreadableMediaError("no frame could be decoded")
            fill = None
            for i in sorted(wanted):
                if i not in got:
                    fill = fill if fill is not None else last.to_ndarray(format="rgb24")
                    got[i] = fill
    except UnreadableMediaError:
        raise
    except Exception as exc:  # av.error.FFmpegError and friends
        raise UnreadableMediaError(_short(exc)) from None
    frames = np.stack([got[int(i)] for i in indices])
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise UnreadableMediaError(f"decoder returned frames of shape {tuple(frames.shape)}")
    return frames, indices


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class VideoClipDataset(ClipDataset):
    """Clips of ``num_frames`` frames from the videos of a manifest (see module docstring).

    ``manifest`` is a CSV/JSONL path (validated by :func:`lc4.data.manifest.load_manifest`) or
    a list of :class:`ManifestEntry`.  ``decode_threads`` is the decoder's thread count per reader.
    ``max_unreadable_fraction`` / ``unreadable_min_tried``: the limit on unreadable videos (see
    the module docstring; ``max_unreadable_fraction=1`` turns it off).
    """

    media_kind = "video"

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Sequence[ManifestEntry],
        num_frames: int = 8,
        resolution: int = 256,
        stride: StrideArg = (1, 4),
        random_start: bool = True,
        seed: int = 0,
        random_crop: bool = False,
        decode_threads: int = 1,
        max_unreadable_fraction: float = 0.05,
        unreadable_min_tried: int = 20,
    ) -> None:
        if isinstance(manifest, (str, os.PathLike)):
            entries = load_manifest(manifest)
        else:
            entries = list(manifest)
            if not entries:
                raise ValueError("VideoClipDataset: the manifest has no entries")
        self.entries: list[ManifestEntry] = entries
        self.decode_threads = _check_positive("decode_threads", decode_threads)
        super().__init__(len(entries), num_frames=num_frames, resolution=resolution, stride=stride,
                         random_start=random_start, random_crop=random_crop, seed=seed,
                         max_unreadable_fraction=max_unreadable_fraction,
                         unreadable_min_tried=unreadable_min_tried)

    def _item_name(self, index: int) -> str:
        return str(self.entries[index].video)

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        entry = self.entries[index]
        frames, _ = read_video_clip(
            Path(entry.video), num_frames=self.num_frames, stride=self.stride,
            random_start=self.random_start, rng=rng, start=entry.start, end=entry.end,
            threads=self.decode_threads,
        )
        return {"pixel_values": frames_to_tensor(frames, self.resolution, self._crop(rng)),
                "caption": entry.caption}
