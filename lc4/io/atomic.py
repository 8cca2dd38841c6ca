"""Atomic outputs: write to a hidden temporary name beside the target, rename when complete.

A crash or an exception never leaves a half-written video or frame folder under the final
name, inputs are never overwritten, and an existing output is only replaced when asked.
The temporary lives in the target's directory, so the final rename is atomic (same filesystem).

Overwriting is deliberately narrow (:func:`check_replaceable`): a folder is only replaced when
everything in it is something lc4 writes (its numbered PNG frames, a synthetic benchmark laid out
by ``lc4 synth``, lc4's own hidden temporaries), never when it holds other files, an input, or the
current working directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["AtomicOutput", "atomic_output", "check_output_path", "check_replaceable", "foreign_entry"]

PathLike = str | os.PathLike

#: A frame written by :func:`lc4.io.write_png_folder` (``00000.png``, ``123456.png``).
_FRAME_NAME = re.compile(r"\d{5,}\.png")
#: lc4's own hidden files: atomic temporaries (``.x.abc.partial.mp4``, ``.x.abc.partial``), folders
#: being replaced (``.x.abc.old``) and resume states (``.x.lc4-resume.pt``, ``...pt.tmp``).
_LC4_HIDDEN = re.compile(r"\..*\.(partial(\.[A-Za-z0-9]+)?|old|lc4-resume\.pt(\.tmp)?)")
#: Files operating systems drop into folders they display; they hold nothing of the user's.
_OS_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: What ``lc4 synth`` (``lc4.data.synthetic.write_dataset``) writes into its folder.
_SYNTH_FILES = frozenset({"manifest.csv", "meta.jsonl", "palette.json"})
_SYNTH_NUMBERED = re.compile(r"\d{6,}")


def _same_path(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _is_frame_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding image frames (an input that a new image would join)."""
    from .frames import is_image_file

    try:
        return path.is_dir() and any(is_image_file(entry) for entry in path.iterdir())
    except OSError:
        return False


def _is_ancestor(folder: Path, path: Path) -> bool:
    """Whether ``path`` lies inside ``folder`` (after resolving links and ``..``)."""
    try:
        return folder.resolve() in path.resolve().parents
    except (OSError, RuntimeError):
        return False


def _is_lc4_clutter(entry: Path) -> bool:
    name = entry.name
    return bool(_LC4_HIDDEN.fullmatch(name)) or name in _OS_CLUTTER or (
        name.startswith("._") and not entry.is_dir())  # macOS AppleDouble companions


def _foreign_in_frame_folder(folder: Path) -> Path | None:
    for entry in folder.iterdir():
        if _is_lc4_clutter(entry):
            continue
        if not (_FRAME_NAME.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink()):
            return entry
    return None


def _foreign_in_synthetic_set(folder: Path) -> Path | None:
    """The first entry that ``lc4 synth`` would not have written, or None for its exact layout."""
    for entry in folder.iterdir():
        name = entry.name
        if _is_lc4_clutter(entry):
            continue
        if entry.is_symlink():
            return entry
        if name in _SYNTH_FILES and entry.is_file():
            continue
        if name in ("videos", "grey") and entry.is_dir():
            for item in entry.iterdir():
                if _is_lc4_clutter(item):
                    continue
                stem = item.name[: -len(".mp4")] if item.name.endswith(".mp4") else item.name
                if not _SYNTH_NUMBERED.fullmatch(stem) or item.is_symlink():
                    return item
                if item.is_dir():
                    bad = _foreign_in_frame_folder(item)
                    if bad is not None:
                        return bad
                elif not (item.is_file() and item.name.endswith(".mp4")):
                    return item
            continue
        if name == "masks" and entry.is_dir():
            for item in entry.iterdir():
                if _is_lc4_clutter(item):
                    continue
                if not (item.is_file() and not item.is_symlink() and item.name.endswith(".npz")
                        and _SYNTH_NUMBERED.fullmatch(item.name[: -len(".npz")])):
                    return item
            continue
        return entry
    return None


def foreign_entry(folder: PathLike) -> Path | None:
    """The first entry of ``folder`` that lc4 did not write, or ``None`` when lc4 may replace it.

    lc4 recognises the folders it writes: numbered PNG frames (``00000.png`` ... from
    :func:`lc4.io.write_png_folder`) and the synthetic benchmark of ``lc4 synth`` (``videos/``,
    ``grey/``, ``masks/``, ``manifest.csv``, ``meta.jsonl``, ``palette.json``). lc4's hidden
    temporaries and resume files and OS clutter (``.DS_Store``, ``Thumbs.db``) are ignored. An
    empty folder holds nothing to lose. Anything else, a symbolic link included, is foreign.
    """
    d = Path(folder)
    frames = _foreign_in_frame_folder(d)
    if frames is None:
        return None
    names = {p.name for p in d.iterdir()}
    if {"manifest.csv", "meta.jsonl"} <= names:
        return _foreign_in_synthetic_set(d)
    return frames


def check_replaceable(path: PathLike, inputs: Iterable[PathLike] = ()) -> None:
    """Refuse (``ValueError``, one line) to replace the existing folder ``path`` unless lc4 wrote it.

    The shared rule behind every ``overwrite``/``--overwrite`` that replaces a folder: the folder
    must not be a symbolic link, hold (or be) an input, be or hold the current working directory,
    or hold anything lc4 did not write (:func:`foreign_entry`).
    """
    out = Path(path)
    for inp in inputs:
        if inp is not None and (_same_path(out, Path(inp)) or _is_ancestor(out, Path(inp))):
            raise ValueError(f"{out}: holds the input {inp}; lc4 never replaces a folder that contains an input "
                             "(choose another output path)")
    if out.is_symlink():
        raise ValueError(f"{out}: is a symbolic link; lc4 does not replace it (choose another output path)")
    try:
        cwd = Path.cwd()
    except OSError:
        cwd = None
    if cwd is not None and (_same_path(out, cwd) or _is_ancestor(out, cwd)):
        raise ValueError(f"{out}: is the current working folder (or holds it); lc4 never replaces it "
                         "(choose another output path)")
    try:
        foreign = foreign_entry(out)
    except OSError as e:
        raise ValueError(f"{out}: cannot check what the folder holds ({e.strerror or e}); not replacing it") from None
    if foreign is not None:
        raise ValueError(f"{out}: holds {foreign.relative_to(out)!s}, which lc4 did not write; --overwrite only "
                         "replaces lc4's own outputs (its PNG frame folders): choose another output path")


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

    ``ValueError`` if it is one of ``inputs`` (also through links), is a folder holding one of
    them, lies inside an input frame folder, or exists with the wrong type; ``FileExistsError`` if it exists and ``overwrite`` is
    false. With ``overwrite``, an existing folder must be one lc4 wrote (:func:`check_replaceable`).
    """
    out = Path(path)
    if str(path) == "" or out.name in ("", ".", ".."):
        raise ValueError(f"output path {str(path)!r} must name a file or directory")
    inputs = [inp for inp in inputs if inp is not None]
    for inp in inputs:
        if _same_path(out, Path(inp)):
            raise ValueError(f"{out}: output is the same as the input {inp}; choose another output path")
        if out.is_dir() and _is_ancestor(out, Path(inp)):
            raise ValueError(f"{out}: holds the input {inp}; lc4 never writes over a folder that contains an "
                             "input (choose another output path)")
        if _is_frame_folder(Path(inp)) and _is_ancestor(Path(inp), out):
            raise ValueError(f"{out}: is inside the input frame folder {inp}; lc4 never writes into an input (a "
                             "new image there would become one of its frames): choose another output path")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out}: already exists; pass overwrite=True (--overwrite) to replace it")
        if directory and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory; cannot replace it with a frame folder")
        if not directory and out.is_dir():
            raise ValueError(f"{out}: exists and is a directory; cannot replace it with a file")
        if directory:
            check_replaceable(out, inputs)
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
        inputs = [inp for inp in inputs if inp is not None]
        self.path = check_output_path(path, overwrite=overwrite, inputs=inputs, directory=directory)
        self.inputs = inputs
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
                if self.directory and self.path.is_dir():
                    check_replaceable(self.path, self.inputs)  # again: it may have changed meanwhile
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
