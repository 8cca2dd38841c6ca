"""Clips (or single images) from folders of frames: DAVIS layout, Videvo frame dumps, photos.

Layout rules (``root`` may be any of these):

* DAVIS: ``root/JPEGImages/480p/<seq>/00000.jpg …`` (``root/JPEGImages/<seq>/`` also works);
* a folder of sequences: ``root/<seq>/*.png``;
* a folder of images: the images directly inside the folder form one sequence named after it.

With ``num_frames == 1`` every frame is an item (stage 0, image reconstruction); otherwise every
sequence is an item and a clip is sampled from it like :class:`~lc4.data.video_clips.VideoClipDataset`
does.  Captions are optional: a mapping (or a JSON object / two-column CSV file) from sequence
name – or, for loose images, file stem – to text; anything unnamed gets ``""``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lc4.data.video_clips import (
    ClipDataset,
    StrideArg,
    UnreadableMediaError,
    frames_to_tensor,
    plan_clip,
)

__all__ = ["FrameFolderDataset", "find_sequences", "load_caption_map", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_NAME_COLUMNS = ("name", "sequence", "seq", "video", "id")


def _natural_key(name: str) -> list[Any]:
    """Sort "frame2" before "frame10" (DAVIS is zero-padded, other dumps are not)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def find_sequences(root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Map sequence name → its frames in order, following the layout rules above."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"frame folder not found: {root}")
    base = root
    for candidate in (root / "JPEGImages" / "480p", root / "JPEGImages"):
        if candidate.is_dir():
            base = candidate
            break
    sequences: dict[str, list[Path]] = {}
    loose = _images_in(base)
    if loose:
        sequences[base.name] = loose
    for sub in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)):
        frames = _images_in(sub)
        if frames:
            sequences[sub.name] = frames
    if not sequences:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {base} or its subfolders")
    return sequences


def load_caption_map(source: str | os.PathLike[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Captions by name from a mapping, a JSON object file or a ``name,caption`` CSV file."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(data, dict):
            raise ValueError(f"captions file {path}: expected a JSON object name → caption, "
                             f"got {type(data).__name__}")
        return {str(k): str(v) for k, v in data.items()}
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        if rows and rows[0] and rows[0][0].strip().lower() in _NAME_COLUMNS:
            rows = rows[1:]
        bad = next((i for i, r in enumerate(rows) if len(r) < 2), None)
        if bad is not None:
            raise ValueError(f"captions file {path}: row {bad + 1} needs two cells (name, caption)")
        return {r[0].strip(): r[1].strip() for r in rows}
    raise ValueError(f"captions file {path}: unsupported type {path.suffix!r}; expected .json or .csv")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UnreadableMediaError(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)


class FrameFolderDataset(ClipDataset):
    """Items from frame folders with the same output dict as the video dataset."""

    media_kind = "image"

    def __init__(
        self,
        root: str | os.PathLike[str],
        num_frames: int = 1,
        resolution: int = 256,
        stride: StrideArg = 1,
        random_start: bool = True,
        seed: int = 0,
        random_crop: bool = False,
        captions: str | os.PathLike[str] | Mapping[str, str] | None = None,
        max_unreadable_fraction: float = 0.05,
        unreadable_min_tried: int = 20,
    ) -> None:
        self.root = Path(root)
        self.sequences = find_sequences(self.root)
        self.captions = load_caption_map(captions)
        names = list(self.sequences)
        if num_frames == 1:
            self._items = [(n, i) for n in names for i in range(len(self.sequences[n]))]
        else:
            self._items = [(n, -1) for n in names]
        super().__init__(len(self._items), num_frames=num_frames, resolution=resolution, stride=stride,
                         random_start=random_start, random_crop=random_crop, seed=seed,
                         max_unreadable_fraction=max_unreadable_fraction,
                         unreadable_min_tried=unreadable_min_tried)

    def _caption(self, seq: str, frame: Path | None) -> str:
        if frame is not None:
            for key in (f"{seq}/{frame.stem}", frame.stem, frame.name):
                if key in self.captions:
                    return self.captions[key]
        return self.captions.get(seq, "")

    def _item_name(self, index: int) -> str:
        seq, frame = self._items[index]
        frames = self.sequences[seq]
        return str(frames[frame] if frame >= 0 else frames[0].parent)

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        seq, frame = self._items[index]
        paths = self.sequences[seq]
        if frame >= 0:
            chosen = [paths[frame]]
        else:
            indices = plan_clip(0, len(paths), self.num_frames, self.stride, self.random_start, rng)
            chosen = [paths[i] for i in indices]
        unique = {p: _read_image(p) for p in dict.fromkeys(chosen)}
        shapes = {a.shape for a in unique.values()}
        if len(shapes) != 1:
            raise UnreadableMediaError(f"frames of different sizes in one clip: {sorted(shapes)}")
        frames = np.stack([unique[p] for p in chosen])
        caption = self._caption(seq, paths[frame] if frame >= 0 else None)
        return {"pixel_values": frames_to_tensor(frames, self.resolution, self._crop(rng)),
                "caption": caption}
