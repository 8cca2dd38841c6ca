"""Write frames as a folder of numbered PNGs (``00000.png``, ``00001.png``, ...), atomically."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from PIL import Image

from .atomic import AtomicOutput, PathLike

__all__ = ["write_png_folder", "frame_name"]


def frame_name(index: int) -> str:
    """File name of frame ``index``: five digits, more past 99999 (natural sort stays right)."""
    return f"{index:05d}.png"


def _frames(items: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """Flatten single frames ``(H, W, 3)`` and chunks ``(T, H, W, 3)`` into frames."""
    for item in items:
        arr = np.asarray(item)
        if arr.ndim == 4:
            yield from arr
        else:
            yield arr


def write_png_folder(
    frames: Iterable[np.ndarray] | np.ndarray,
    directory: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    compress_level: int = 1,
    before_commit: Callable[[int], None] | None = None,
) -> int:
    """Write ``uint8`` RGB frames to ``directory`` as ``00000.png``... ; returns the frame count.

    ``frames`` is an array ``(T, H, W, 3)`` or any iterable of frames / chunks (e.g.
    :func:`lc4.io.iter_frames`), consumed lazily. The folder is built under a hidden temporary
    name and renamed when complete, so a failure leaves neither a partial folder nor the
    temporary. ``compress_level`` is zlib's 0..9 (1: fast; PNG is lossless at every level).
    ``before_commit(count)`` runs once every frame is written, just before the rename: what it
    records (a journal entry) exists whenever the folder does.
    """
    if not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be an integer in [0, 9], got {compress_level!r}")
    out = AtomicOutput(directory, overwrite=overwrite, inputs=inputs, directory=True)
    count = 0
    first: tuple[int, ...] | None = None
    try:
        for frame in _frames(frames):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
                raise ValueError(
                    f"frames must be uint8 RGB (H, W, 3); got dtype {frame.dtype}, shape {frame.shape}"
                )
            if first is None:
                first = frame.shape
            elif frame.shape != first:
                raise ValueError(f"frame {count} has shape {frame.shape}, but the first frame has {first}")
            Image.fromarray(np.ascontiguousarray(frame)).save(
                out.tmp / frame_name(count), format="PNG", compress_level=compress_level
            )
            count += 1
        if count == 0:
            raise ValueError(f"{out.path}: no frames were given; nothing to save")
        if before_commit is not None:
            before_commit(count)
    except BaseException:
        out.discard()
        raise
    out.commit()
    return count
