"""Write a synthetic benchmark to disk: videos, grey videos, masks, a training manifest, metadata.

Layout of ``out_dir`` (item ``k`` has seed ``seed + k`` and name ``f"{k:06d}"``)::

    manifest.csv        video,caption  (paths relative to the manifest: the training format)
    meta.jsonl          one JSON record per video: paths, caption, seed, shapes, colours
    palette.json        the shape and background palettes (names, 8-bit sRGB, CIELAB)
    videos/000000.mp4   colour video (or videos/000000/00000.png ... with format="png")
    grey/000000.mp4     its Lab-L grey version (the model input)
    masks/000000.npz    "masks": (T, n, H, W) bool, visible pixels of each instance

The whole folder is built under a temporary name and renamed when complete (an existing
``out_dir`` is replaced only with ``overwrite=True``). MP4s are H.264 4:4:4 at a low CRF so
colours survive; use ``format="png"`` for bit-exact frames.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from lc4.io import VideoWriter, atomic_output, check_output_path, write_png_folder

from .naming import draw_naming, is_free_item
from .palette import BACKGROUND_L, BACKGROUND_PALETTE, SHAPE_L, SHAPE_PALETTE, Palette
from .video import MAX_SIZE, MIN_SIZE, generate_video, resolve_num_frames

__all__ = ["write_dataset", "read_meta", "load_masks", "FORMATS", "MAX_VIDEOS"]

FORMATS = ("mp4", "png")
#: Upper bound on ``num_videos`` (a typo guard; 1e6 videos of 64² x 8 are ~10 GB of MP4).
MAX_VIDEOS = 1_000_000


def _write_frames(frames: np.ndarray, path: Path, fmt: str, fps: float, crf: int) -> None:
    if fmt == "png":
        write_png_folder(frames, path)
    else:
        with VideoWriter(path, fps, crf=crf, pixel_format="yuv444p") as writer:
            writer.write(frames)


def write_dataset(
    out_dir: str | os.PathLike[str],
    num_videos: int,
    seed: int = 0,
    size: int = 64,
    num_frames: int | None = None,
    format: Literal["mp4", "png"] = "mp4",
    *,
    num_shapes: int | tuple[int, int] = (1, 3),
    long: bool = False,
    fps: float = 8.0,
    crf: int = 10,
    overwrite: bool = False,
    palette: Palette = SHAPE_PALETTE,
    background_palette: Palette = BACKGROUND_PALETTE,
    progress: Callable[[int, int], None] | None = None,
    free_fraction: float = 0.0,
    colors_named: str = "all",
) -> Path:
    """Generate ``num_videos`` videos (seeds ``seed .. seed + num_videos - 1``) into ``out_dir``.

    Returns the final folder. Raises ``FileExistsError`` if it exists and not ``overwrite``
    (checked before any work), ``ValueError`` for out-of-range arguments. ``progress(done,
    total)`` is called after each video. ``free_fraction`` / ``colors_named`` choose which colours
    the captions name, as in :class:`~.dataset.SyntheticVideoDataset` (the free-colour split).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if isinstance(num_videos, bool) or not isinstance(num_videos, (int, np.integer)) or not 1 <= num_videos <= MAX_VIDEOS:
        raise ValueError(f"num_videos must be an integer in [1, {MAX_VIDEOS}], got {num_videos!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise ValueError(f"fps must be in (0, 240], got {fps!r}")
    T = resolve_num_frames(num_frames, long)
    if free_fraction and colors_named != "all":
        raise ValueError("give free_fraction (a named/free mix) or colors_named (one mode), not both")
    is_free_item(0, free_fraction)  # validates it
    draw_naming(0, 1, colors_named)  # validates it
    out = check_output_path(out_dir, overwrite=overwrite, directory=True)

    with atomic_output(out, overwrite=overwrite, directory=True) as tmp:
        for sub in ("videos", "grey", "masks"):
            (tmp / sub).mkdir()
        suffix = ".mp4" if format == "mp4" else ""
        rows: list[dict[str, str]] = []
        meta: list[dict[str, Any]] = []
        for k in range(int(num_videos)):
            mode = ("some" if is_free_item(int(seed) + k, free_fraction) else "all") if free_fraction else colors_named
            v = generate_video(
                int(seed) + k, T, size, num_shapes, palette, long, background_palette=background_palette,
                colors_named=mode,
            )
            name = f"{k:06d}"
            video_rel, grey_rel, mask_rel = f"videos/{name}{suffix}", f"grey/{name}{suffix}", f"masks/{name}.npz"
            _write_frames(v.rgb, tmp / video_rel, format, fps, crf)
            _write_frames(v.grey, tmp / grey_rel, format, fps, crf)
            np.savez_compressed(tmp / mask_rel, masks=v.masks)
            rows.append({"video": video_rel, "caption": v.caption})
            meta.append(
                {
                    "video": video_rel,
                    "grey": grey_rel,
                    "masks": mask_rel,
                    "caption": v.caption,
                    "seed": v.seed,
                    "shapes": v.shapes,
                    "instance_colors": v.instance_colors,
                    "background_color": v.background_color,
                    "named": v.named,
                    "background_named": v.background_named,
                    "texture": v.texture,
                    "num_frames": v.num_frames,
                    "size": v.size,
                    "long": v.long,
                    "fps": fps,
                }
            )
            if progress is not None:
                progress(k + 1, int(num_videos))
        with open(tmp / "manifest.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["video", "caption"])
            writer.writeheader()
            writer.writerows(rows)
        with open(tmp / "meta.jsonl", "w", encoding="utf-8") as f:
            for rec in meta:
                f.write(json.dumps(rec) + "\n")
        palettes = {
            "shape_L": SHAPE_L,
            "background_L": BACKGROUND_L,
            "shape": palette.to_json(),
            "background": background_palette.to_json(),
        }
        (tmp / "palette.json").write_text(json.dumps(palettes, indent=1) + "\n", encoding="utf-8")
    return out


def read_meta(dataset_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``dataset_dir/meta.jsonl`` (paths stay relative to ``dataset_dir``)."""
    path = Path(dataset_dir) / "meta.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (not a synthetic dataset folder?)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_masks(path: str | os.PathLike[str]) -> np.ndarray:
    """The ``(T, n, H, W)`` bool masks stored in one ``masks/*.npz`` file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with np.load(p) as data:
        return data["masks"].astype(bool)
