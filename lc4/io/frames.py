"""Folders of frames (DAVIS layout or plain) and single images: listing, natural order, loading.

A "frame folder" is a directory of image files read in natural order (``2.png`` before
``10.png``). The DAVIS 2017 layout is resolved too: a DAVIS root, its ``JPEGImages`` or
``JPEGImages/480p`` folder leads to the one sequence inside (``480p`` preferred over
``Full-Resolution``); a folder holding several sequences is refused with their names, since
each sequence is its own video.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "natural_key", "is_image_file", "find_frame_files", "load_image", "image_size"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_DAVIS_RESOLUTIONS = ("480p", "Full-Resolution", "1080p")

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str | Path) -> tuple:
    """Sort key that orders embedded numbers by value: ``f2.png`` < ``f10.png``."""
    text = Path(name).name if isinstance(name, Path) else str(name)
    parts = _DIGITS.split(text)
    # (kind, value) pairs keep int/str comparisons apart; lower-case text, then the raw text as
    # a tie-break so the order is total and stable.
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p != "")
    return key + ((2, 0, text),)


def is_image_file(path: Path) -> bool:
    """An image frame by extension (case-insensitive); hidden files (``._x.jpg``) are ignored."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_in(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_file() and is_image_file(p)), key=natural_key)


def _subdirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def find_frame_files(directory: str | Path) -> list[Path]:
    """Frame files of one sequence folder, natural-sorted; resolves the DAVIS layout.

    Raises ``FileNotFoundError`` when the folder (or the DAVIS path) holds no image frames, and
    ``ValueError`` when it holds several sequences.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    current = root
    for _ in range(4):  # root -> JPEGImages -> 480p -> <seq>
        files = _images_in(current)
        if files:
            return files
        subdirs = _subdirs(current)
        names = {p.name for p in subdirs}
        if "JPEGImages" in names:
            current = current / "JPEGImages"
            continue
        resolution = next((r for r in _DAVIS_RESOLUTIONS if r in names), None)
        if resolution is not None:
            current = current / resolution
            continue
        sequences = [p for p in subdirs if _images_in(p)]
        if len(sequences) == 1:
            current = sequences[0]
            continue
        if len(sequences) > 1:
            shown = ", ".join(p.name for p in sequences[:5]) + (", ..." if len(sequences) > 5 else "")
            raise ValueError(
                f"{root}: holds {len(sequences)} sequences ({shown}); pass one sequence folder"
            )
        break
    exts = "/".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
    raise FileNotFoundError(f"{root}: no image frames ({exts}) found in this directory")


def _to_rgb_uint8(im: Image.Image, path: Path) -> np.ndarray:
    """PIL image of any common mode -> (H, W, 3) uint8 RGB (16-bit scaled, alpha dropped)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.int64)
        if im.mode == "I" and a.max(initial=0) <= 255:
            a8 = np.clip(a, 0, 255).astype(np.uint8)
        else:
            a8 = (np.clip(a, 0, 65535) // 257).astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=-1)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
        a8 = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        return np.repeat(a8[..., None], 3, axis=-1)
    if im.mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{path}: cannot convert image of mode {im.mode} to RGB")
    return np.ascontiguousarray(arr)


def load_image(path: str | Path) -> np.ndarray:
    """Read one image as ``(H, W, 3)`` uint8 RGB, EXIF orientation applied (as viewers show it)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb_uint8(im, p)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{p}: cannot read image ({e})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image as displayed (EXIF rotation applied), without decoding it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{p}: cannot read image ({e})") from None
    if orientation in (5, 6, 7, 8):  # transposed orientations swap the axes
        width, height = height, width
    return width, height
