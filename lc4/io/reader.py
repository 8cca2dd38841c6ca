"""Decode frames as ``uint8`` RGB: all at once (:func:`read_frames`) or streamed in chunks
(:func:`iter_frames`, for films that do not fit in memory).

Video files are decoded with PyAV (FFmpeg) in display order; the stream's colour tags are
honoured (BT.709 HD, BT.601 when untagged, limited/full range) and rotation metadata is applied,
so frames look as a player shows them. One decoder is used for everything, so the frame count
of :func:`read_frames`, :func:`iter_frames` and :func:`lc4.io.probe` agree.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import numpy as np

from .frames import find_frame_files, load_image
from .probe import _short, frame_rotation, open_video, probe, source_kind, video_stream
from .progress import progress_bar

__all__ = ["read_frames", "iter_frames", "DEFAULT_MAX_BYTES"]

#: :func:`read_frames` refuses to allocate more than this (use :func:`iter_frames` instead).
DEFAULT_MAX_BYTES = 8 * 1024**3


def _iter_video(p: Path) -> Iterator[np.ndarray]:
    """Every frame of a video file, ``(H, W, 3)`` uint8 RGB, rotation applied."""
    with open_video(p) as container:
        stream = video_stream(container, p)
        stream.thread_type = "AUTO"
        claimed = int(stream.frames or 0)
        first_shape: tuple[int, ...] | None = None
        index = 0
        bar = progress_bar(claimed, f"decoding {p.name}")
        try:
            for frame in container.decode(stream):
                if bar is not None:
                    bar.update(1)
                arr = frame.to_ndarray(format="rgb24")
                rotation = frame_rotation(frame)
                if rotation:
                    arr = np.ascontiguousarray(np.rot90(arr, k=rotation // 90))
                if first_shape is None:
                    first_shape = arr.shape
                elif arr.shape != first_shape:
                    raise ValueError(
                        f"{p}: frame {index} is {arr.shape[1]}x{arr.shape[0]}, "
                        f"but the video started at {first_shape[1]}x{first_shape[0]}"
                    )
                yield arr
                index += 1
        except av.error.FFmpegError as e:
            raise ValueError(f"{p}: cannot decode video at frame {index} ({_short(e)})") from None
        finally:
            if bar is not None:
                bar.close()
    if index == 0:
        raise ValueError(f"{p}: video has no frames")
    if claimed and index < claimed:
        warnings.warn(f"{p}: decoded {index} frames, but the container claims {claimed} (truncated file?)", stacklevel=2)


def _iter_files(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """Frames from image files, all of the first file's size (a progress bar while one is on)."""
    bar = progress_bar(len(files), f"reading {files[0].parent.name or 'frames'}") if len(files) > 1 else None
    try:
        yield from _check_sizes(files, bar)
    finally:
        if bar is not None:
            bar.close()


def _check_sizes(files: Sequence[Path], bar) -> Iterator[np.ndarray]:
    first_shape: tuple[int, ...] | None = None
    first_file: Path | None = None
    for f in files:
        arr = load_image(f)
        if bar is not None:
            bar.update(1)
        if first_shape is None:
            first_shape, first_file = arr.shape, f
        elif arr.shape != first_shape:
            raise ValueError(
                f"{f}: frame is {arr.shape[1]}x{arr.shape[0]}, but {first_file.name} is "  # type: ignore[union-attr]
                f"{first_shape[1]}x{first_shape[0]}; all frames must have one size"
            )
        yield arr


def _source_files(p: Path) -> list[Path] | None:
    """Image files for frame folders / images, ``None`` for video files."""
    kind = source_kind(p)
    if kind == "frames":
        return find_frame_files(p)
    if kind == "image":
        return [p]
    return None


def _iter_single(p: Path) -> Iterator[np.ndarray]:
    files = _source_files(p)
    return _iter_video(p) if files is None else _iter_files(files)


def _check_range(start: int, stop: int | None) -> None:
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if stop is not None and (not isinstance(stop, int) or stop < start):
        raise ValueError(f"stop must be an integer >= start ({start}), got {stop!r}")


def iter_frames(
    path: str | Path,
    chunk_size: int = 16,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream frames ``start <= i < stop`` as chunks ``(n, H, W, 3)`` uint8 RGB, ``n <= chunk_size``.

    Only one chunk is held in memory, so films of any length can be processed. Frames before
    ``start`` are decoded and dropped (no seeking: exact for every codec and container).
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    _check_range(start, stop)
    p = Path(path)
    files = _source_files(p)
    if files is not None:  # no need to load the frames that are skipped
        frames: Iterable[np.ndarray] = _iter_files(files[start:stop])
    else:
        frames = _iter_video(p)
    chunk: list[np.ndarray] = []
    skip = 0 if files is not None else start
    limit = None if stop is None else stop - start
    produced = 0
    for i, frame in enumerate(frames):
        if i < skip:
            continue
        if limit is not None and produced >= limit:
            break
        chunk.append(frame)
        produced += 1
        if len(chunk) == chunk_size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Read a whole source (or the frames at ``indices``, in that order) as ``(T, H, W, 3)`` uint8.

    Indices may repeat and come in any order; they must satisfy ``0 <= i < num_frames``.
    Refuses, before decoding, to allocate more than ``max_bytes`` (``None``: no limit).
    """
    p = Path(path)
    info = probe(p)
    if indices is None:
        wanted = np.arange(info.num_frames)
    else:
        wanted = np.asarray(indices)
        if wanted.ndim != 1 or (wanted.size and not np.issubdtype(wanted.dtype, np.integer)):
            raise ValueError(f"indices must be a 1-D sequence of integers, got {indices!r}")
        wanted = wanted.astype(np.int64)
        bad = wanted[(wanted < 0) | (wanted >= info.num_frames)]
        if bad.size:
            raise ValueError(f"{p}: frame index {int(bad[0])} out of range; the source has {info.num_frames} frames")
    nbytes = int(wanted.size) * info.width * info.height * 3
    if max_bytes is not None and nbytes > max_bytes:
        raise ValueError(
            f"{p}: reading {wanted.size} frames of {info.width}x{info.height} needs "
            f"{nbytes / 1024**3:.2f} GiB, over the max_bytes limit of {max_bytes / 1024**3:.2f} GiB; "
            "use iter_frames to stream it"
        )
    if wanted.size == 0:
        return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)

    files = _source_files(p)
    if files is not None:
        unique = np.unique(wanted)
        loaded = dict(zip(unique.tolist(), _iter_files([files[i] for i in unique])))
        return np.stack([loaded[i] for i in wanted.tolist()])

    unique = set(wanted.tolist())
    last = int(wanted.max())
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    for i, frame in enumerate(_iter_video(p)):
        decoded = i + 1
        if i in unique:
            kept[i] = frame
        if i >= last:
            break
    missing = [i for i in wanted.tolist() if i not in kept]
    if missing:
        raise ValueError(
            f"{p}: frame {missing[0]} could not be decoded; the stream ended after {decoded} frames "
            f"(the container claims {info.num_frames})"
        )
    return np.stack([kept[i] for i in wanted.tolist()])
