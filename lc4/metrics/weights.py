"""Where metric weights are looked for, and the one error message used when they are absent.

No weights are downloaded. A file is taken from, in order: an explicit file path, the
``weights_dir`` the caller gives, then the torch hub cache (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``), then any extra folders a metric adds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["WeightFile", "hub_checkpoint_dir", "search_dirs", "find_weight_file", "require_weight_files"]


@dataclass(frozen=True)
class WeightFile:
    """A weight file a metric needs: its file name, what it is, and where users can get it."""

    filename: str
    description: str
    url: str


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (honours ``TORCH_HOME``), where torchvision caches weights."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights_dir: str | os.PathLike | None = None, extra: Iterable[Path] = ()) -> list[Path]:
    """The folders searched, in order, without duplicates."""
    dirs: list[Path] = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir).expanduser())
    dirs.append(hub_checkpoint_dir())
    dirs.extend(Path(d) for d in extra)
    seen: set[str] = set()
    unique = []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def find_weight_file(
    filename: str, weights_dir: str | os.PathLike | None = None, extra: Iterable[Path] = ()
) -> Path | None:
    """First existing ``<dir>/<filename>`` in :func:`search_dirs`, or None.

    ``weights_dir`` may also be the file itself.
    """
    if weights_dir is not None and Path(weights_dir).expanduser().is_file():
        given = Path(weights_dir).expanduser()
        if given.name == filename:
            return given
        weights_dir = given.parent
    for d in search_dirs(weights_dir, extra):
        candidate = d / filename
        if candidate.is_file():
            return candidate
    return None


def require_weight_files(
    metric: str,
    files: Sequence[WeightFile],
    weights_dir: str | os.PathLike | None = None,
    extra: Iterable[Path] = (),
) -> list[Path]:
    """Paths of all ``files``; raise FileNotFoundError naming every missing one and where to put it."""
    extra = list(extra)
    found, missing = [], []
    for f in files:
        path = find_weight_file(f.filename, weights_dir, extra)
        (missing if path is None else found).append(f if path is None else path)
    if missing:
        where = ", ".join(str(d) for d in search_dirs(weights_dir, extra))
        need = "; ".join(f"'{f.filename}' ({f.description}, from {f.url})" for f in missing)
        raise FileNotFoundError(
            f"{metric} needs weight file(s) that were not found: {need}. "
            f"Put them in one of: {where} (or pass weights_dir / --weights-dir)."
        )
    return found
