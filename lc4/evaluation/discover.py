"""Finding the videos of an evaluation set on disk and reading them as RGB arrays.

A set root may be laid out as

* DAVIS: ``<root>/JPEGImages/480p/<seq>/*.jpg`` (any single resolution folder works);
* folders of frames: ``<root>/<seq>/*.png|jpg|…``;
* video files: ``<root>/<seq>.mp4`` (any container FFmpeg reads; via ``lc4.io.read_frames``).

A video's name is its folder name or file stem; frames are ordered by natural sort of their file
names (``2.png`` before ``10.png``). Nothing under the root is modified.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "VideoSource",
    "natural_key",
    "frames_root",
    "discover_videos",
    "read_frame_folder",
    "resize_video",
]

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers numerically."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def _has_frame_folders(folder: Path) -> bool:
    return any(d.is_dir() and _image_files(d) for d in folder.iterdir())


def frames_root(root: str | os.PathLike) -> Path:
    """The folder whose sub-folders are sequences (resolves the DAVIS ``JPEGImages/<res>`` level)."""
    root = Path(root).expanduser()
    jpeg = root / "JPEGImages"
    if jpeg.is_dir():
        if (jpeg / "480p").is_dir():
            return jpeg / "480p"
        if _has_frame_folders(jpeg):
            return jpeg
        subdirs = [d for d in jpeg.iterdir() if d.is_dir()]
        if len(subdirs) == 1:
            return subdirs[0]
        raise ValueError(
            f"{jpeg} has {len(subdirs)} resolution folders and no 480p; point to one of them directly"
        )
    return root


@dataclass(frozen=True)
class VideoSource:
    """One video of a set: a folder of frames or a video file."""

    name: str
    path: Path
    kind: Literal["frames", "file"]

    def frame_count(self) -> int | None:
        """Number of frames of a frame folder, counted without decoding; None for a video file
        (a container's header count is not trusted: the count is known once it is decoded)."""
        return len(_image_files(self.path)) if self.kind == "frames" else None

    def read(self, resolution: int | None = None) -> np.ndarray:
        """Frames as ``(T, H, W, 3)`` uint8 RGB, resized to ``resolution``² (no crop) when given."""
        if self.kind == "frames":
            return read_frame_folder(self.path, resolution)
        try:
            from lc4.io import read_frames
        except ImportError as exc:
            raise ImportError(f"reading video file {self.path} needs lc4.io.read_frames: {exc}") from exc
        video = np.asarray(read_frames(self.path))
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise ValueError(
                f"lc4.io.read_frames returned {video.dtype} {video.shape} for {self.path}; expected uint8 (T, H, W, 3)"
            )
        return resize_video(video, resolution) if resolution is not None else video


def discover_videos(root: str | os.PathLike) -> dict[str, VideoSource]:
    """All videos under ``root`` by name, in natural order (see the module doc for layouts)."""
    base = Path(root).expanduser()
    if not base.exists():
        raise FileNotFoundError(f"evaluation folder not found: {base}")
    if not base.is_dir():
        raise ValueError(f"evaluation path must be a folder of videos; got a file: {base}")
    folder = frames_root(base)
    found: dict[str, VideoSource] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and _image_files(entry):
            src = VideoSource(entry.name, entry, "frames")
        elif entry.is_file() and entry.suffix.lower() in VIDEO_EXTS:
            src = VideoSource(entry.stem, entry, "file")
        else:
            continue
        if src.name in found:
            raise ValueError(f"video name {src.name!r} appears twice in {folder}: {found[src.name].path.name} and {entry.name}")
        found[src.name] = src
    if not found:
        raise ValueError(
            f"no videos found in {base}: expected JPEGImages/480p/<seq>/*.jpg, <seq>/*.png|jpg frame folders, or <seq>.mp4 files"
        )
    return found


def read_frame_folder(folder: str | os.PathLike, resolution: int | None = None) -> np.ndarray:
    """All image files of ``folder`` as ``(T, H, W, 3)`` uint8 RGB (grey frames become RGB).

    With ``resolution``, each frame is resized on load (bicubic, no crop), keeping memory low.
    """
    folder = Path(folder)
    files = _image_files(folder)
    if not files:
        raise ValueError(f"no image files in {folder}")
    frames = []
    for f in files:
        with Image.open(f) as im:
            rgb = im.convert("RGB")
            if resolution is not None:
                r = _check_resolution(resolution)
                rgb = rgb if rgb.size == (r, r) else rgb.resize((r, r), Image.BICUBIC)
            frames.append(np.asarray(rgb))
    sizes = {fr.shape for fr in frames}
    if len(sizes) != 1:
        raise ValueError(f"frames in {folder} differ in size: {sorted(sizes)}")
    return np.stack(frames)


def _check_resolution(resolution: int) -> int:
    r = int(resolution)
    if r < 1:
        raise ValueError(f"resolution must be a positive number of pixels; got {resolution}")
    return r


def resize_video(video: np.ndarray, resolution: int) -> np.ndarray:
    """Resize every frame to ``resolution``×``resolution`` (bicubic, no crop: aspect not kept)."""
    r = _check_resolution(resolution)
    if video.shape[1] == r and video.shape[2] == r:
        return video
    return np.stack([np.asarray(Image.fromarray(f).resize((r, r), Image.BICUBIC)) for f in video])
