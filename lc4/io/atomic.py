"""Atomic outputs: write to a hidden temporary name beside the target, rename when complete.

A crash or an exception never leaves a half-written video or frame folder under the final
name, inputs are never overwritten, and an existing output is only replaced when asked.
The temporary lives in the target's directory, so the final rename is atomic (same filesystem).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["AtomicOutput", "atomic_output", "check_output_path"]

PathLike = str | os.PathLike


def _same_path(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _apply_umask(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries: give the output the user's normal permissions."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        path.chmod((0o777 if directory else 0o666) & ~mask)
    except OSError:
        pass


def check_output_path(
    path: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    directory: bool = False,
) -> Path:
    """Validate an output path up front (before any work is done); returns it as a ``Path``.

    ``ValueError`` if it is one of ``inputs`` (also through links) or exists with the wrong
    type; ``FileExistsError`` if it exists and ``overwrite`` is false.
    """
    out = Path(path)
    if str(path) == "" or out.name in ("", ".", ".."):
        raise ValueError(f"output path {str(path)!r} must name a file or directory")
    for inp in inputs:
        if inp is not None and _same_path(out, Path(inp)):
            raise ValueError(f"{out}: output is the same as the input {inp}; choose another output path")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
        if directory and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory; cannot replace it with a frame folder")
        if not directory and out.is_dir():
            raise ValueError(f"{out}: exists and is a directory; cannot replace it with a file")
    return out


class AtomicOutput:
    """A temporary file (or directory) that becomes ``path`` on :meth:`commit`.

    The temporary is ``.<stem>.<random>.partial<suffix>`` in the target directory (the suffix
    is kept so tools that pick a format from the extension still work). Missing parent
    directories are created.
    """

    def __init__(
        self,
        path: PathLike,
        overwrite: bool = False,
        inputs: Iterable[PathLike] = (),
        directory: bool = False,
    ) -> None:
        self.path = check_output_path(path, overwrite=overwrite, inputs=inputs, directory=directory)
        self.overwrite = overwrite
        self.directory = directory
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.path.stem}."
        if directory:
            self.tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".partial"))
        else:
            fd, name = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=f".partial{self.path.suffix}")
            os.close(fd)
            self.tmp = Path(name)
        self.finished = False

    def commit(self) -> Path:
        """Move the temporary to the final name (replacing it only if ``overwrite``)."""
        if self.finished:
            raise RuntimeError(f"{self.path}: output already committed or discarded")
        _apply_umask(self.tmp, self.directory)
        try:
            if self.path.exists() or self.path.is_symlink():
                if not self.overwrite:
                    raise FileExistsError(
                        f"{self.path}: appeared while writing; pass overwrite=True to replace it"
                    )
                if self.directory and self.path.is_dir() and not self.path.is_symlink():
                    backup = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".old"))
                    os.replace(self.path, backup / "old")
                    os.replace(self.tmp, self.path)
                    shutil.rmtree(backup, ignore_errors=True)
                    self.finished = True
                    return self.path
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self.finished = True
        return self.path

    def discard(self) -> None:
        """Remove the temporary; the final path is left untouched."""
        self.finished = True
        if self.tmp.is_dir() and not self.tmp.is_symlink():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


@contextmanager
def atomic_output(
    path: PathLike,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    directory: bool = False,
) -> Iterator[Path]:
    """Context manager yielding a temporary path; renamed to ``path`` if the block succeeds.

    On an exception (including KeyboardInterrupt) the temporary is removed and ``path`` is
    untouched. ``FileExistsError`` if ``path`` exists and not ``overwrite``; ``ValueError`` if
    ``path`` is one of ``inputs``. Example::

        with atomic_output("out.npy", inputs=[src]) as tmp:
            np.save(tmp, array)
    """
    out = AtomicOutput(path, overwrite=overwrite, inputs=inputs, directory=directory)
    try:
        yield out.tmp
    except BaseException:
        out.discard()
        raise
    out.commit()
