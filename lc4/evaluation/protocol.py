"""The L-C4 evaluation protocol: test lists and ground-truth preparation.

* DAVIS30: the 30 sequences of the DAVIS 2017 validation set. The same list is shipped as the
  DAVIS test list of Lai et al. 2018 (``fast_blind_video_consistency/lists/DAVIS-gray_test.txt``)
  and of TCVC (``codes/lists/DAVIS_test.txt``).
* Videvo20: the 20 test videos of the Videvo set collected by Lai et al. 2018, as listed in
  their ``lists/videvo_test.txt`` (the same names appear in the VCGAN/DVP evaluation scripts).
* Ground truth: frames resized to 256×256 without crop (aspect ratio not kept, as the paper's
  256×256 protocol implies), stored losslessly as PNG; the grey input of each frame is the
  CIELAB L* of that resized colour frame, so input and ground truth are pixel-aligned.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from .discover import discover_videos

__all__ = ["DAVIS30", "VIDEVO20", "sequence_list", "lab_lightness_grey", "prepare_ground_truth"]

DAVIS30: tuple[str, ...] = (
    "bike-packing", "blackswan", "bmx-trees", "breakdance", "camel", "car-roundabout",
    "car-shadow", "cows", "dance-twirl", "dog", "dogs-jump", "drift-chicane", "drift-straight",
    "goat", "gold-fish", "horsejump-high", "india", "judo", "kite-surf", "lab-coat", "libby",
    "loading", "mbike-trick", "motocross-jump", "paragliding-launch", "parkour", "pigs",
    "scooter-black", "shooting", "soapbox",
)  # fmt: skip

VIDEVO20: tuple[str, ...] = (
    "AircraftTakingOff1", "CoupleRidingMotorbike", "Cycling", "Ducks", "FarmingLandscape",
    "FatherAndChild2", "Festival", "Freeway2", "Koala", "Madagascar", "MenRidingMotorbike",
    "PalmTrees", "PoliceCar", "SilverCat", "SkateboarderTableJump", "Surfing",
    "TimeSquareTraffic", "Vineyard", "Waterfall2", "YogaHut2",
)  # fmt: skip

_NAMED = {"davis30": DAVIS30, "davis": DAVIS30, "videvo20": VIDEVO20, "videvo": VIDEVO20}


def sequence_list(spec: str | os.PathLike | Iterable[str]) -> tuple[str, ...]:
    """A test list by name (``davis30``, ``videvo20``), from a text file (one name a line), or as given."""
    if isinstance(spec, (str, os.PathLike)):
        key = str(spec).lower()
        if key in _NAMED:
            return _NAMED[key]
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"sequence list must be davis30, videvo20 or a text file; not found: {spec}")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    else:
        names = tuple(str(s) for s in spec)
    if not names:
        raise ValueError(f"sequence list {spec} is empty")
    return names


def lab_lightness_grey(frames: np.ndarray) -> np.ndarray:
    """CIELAB L* (D65, sRGB) of ``(..., 3)`` uint8 RGB as uint8 grey, L* ∈ [0, 100] → [0, 255]."""
    from skimage.color import rgb2lab

    lightness = rgb2lab(np.asarray(frames, dtype=np.uint8))[..., 0]
    return np.clip(np.rint(lightness * 2.55), 0, 255).astype(np.uint8)


def _write_sequence(frames: np.ndarray, folder: Path, inputs: Sequence[Path] = ()) -> None:
    """Write PNG frames to ``folder`` through a temporary sibling folder renamed at the end.

    An existing ``folder`` is replaced only when lc4 wrote it (:func:`lc4.io.check_replaceable`).
    """
    from ..io.atomic import check_replaceable

    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp / f"{i:05d}.png")
    if folder.exists() or folder.is_symlink():
        try:
            check_replaceable(folder, inputs)  # again: it may have changed while the frames were written
        except ValueError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def prepare_ground_truth(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    resolution: int | None = 256,
    sequences: Sequence[str] | str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Build an evaluation set from a source set (DAVIS layout, frame folders or video files).

    Writes ``<dst>/gt/<seq>/00000.png …`` (RGB, ``resolution``² without crop; native size when
    None) and ``<dst>/gray/<seq>/00000.png …`` (8-bit single-channel CIELAB L* of those frames,
    the colourisation input). Sequences already complete in ``dst`` are skipped unless
    ``overwrite`` (so an interrupted run resumes). ``sequences`` restricts to a list (names or
    ``"davis30"``/``"videvo20"``); a listed name missing from ``src`` is an error. Returns the
    names prepared or already present.

    ``dst`` must neither lie inside ``src`` nor hold it, and an existing ``gt/<seq>`` or
    ``gray/<seq>`` is only replaced when lc4 wrote it (:func:`lc4.io.check_replaceable`: its
    numbered PNG frames and nothing else); otherwise ``ValueError``, before anything is written.
    """
    from ..io.atomic import check_replaceable

    src_path, dst_path = Path(src).expanduser().resolve(), Path(dst).expanduser().resolve()
    if dst_path == src_path or src_path in dst_path.parents:
        raise ValueError(f"dst must be outside the source set (inputs are never modified); got {dst_path} inside {src_path}")
    if dst_path in src_path.parents:
        raise ValueError(f"dst must not hold the source set (lc4 never writes into a folder that holds its input); "
                         f"got {src_path} inside {dst_path}")
    if resolution is not None and int(resolution) < 1:
        raise ValueError(f"resolution must be a positive number of pixels or None; got {resolution}")
    videos = discover_videos(src_path)
    names = list(videos) if sequences is None else list(sequence_list(sequences))
    missing = [n for n in names if n not in videos]
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed sequence(s) not in {src_path}: {', '.join(missing[:10])}")
    todo = [n for n in names if overwrite or not ((dst_path / "gt" / n).is_dir() and (dst_path / "gray" / n).is_dir())]
    for name in todo:  # before any work: an existing folder is replaced only when lc4 wrote it
        for folder in (dst_path / "gt" / name, dst_path / "gray" / name):
            if folder.exists() or folder.is_symlink():
                check_replaceable(folder, [src_path])
    for name in todo:
        gt_dir, grey_dir = dst_path / "gt" / name, dst_path / "gray" / name
        frames = videos[name].read(resolution)
        _write_sequence(frames, gt_dir, [src_path])
        _write_sequence(lab_lightness_grey(frames), grey_dir, [src_path])
    return names
