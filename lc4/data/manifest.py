"""Training manifests: which video files to train on, with their captions.

A manifest is a CSV or JSONL file with one clip per row:

* ``video`` – path of a video file, relative to the manifest's folder (or absolute);
* ``caption`` – the clip's description (may be empty: it then trains the unconditional branch);
* ``start`` / ``end`` – optional, seconds; restrict sampling to that part of the file.

Everything is checked when the manifest is loaded, so a typo in row 90 000 stops the run
before training starts instead of crashing an epoch hours later.  InternVid's released
annotations (``YoutubeID``, ``Start_timestamp``, ``End_timestamp``, ``Caption``, …) are
mapped onto this format by :func:`manifest_from_internvid`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

__all__ = [
    "ManifestEntry",
    "load_manifest",
    "write_manifest",
    "manifest_from_internvid",
    "parse_timestamp",
    "MANIFEST_SUFFIXES",
]

log = logging.getLogger(__name__)

#: File suffixes understood as CSV and as JSON lines.
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
MANIFEST_SUFFIXES = CSV_SUFFIXES + JSONL_SUFFIXES
REQUIRED_COLUMNS = ("video", "caption")
#: How many missing videos an error message names before it only gives the count.
_SHOW_MISSING = 5


@dataclass(frozen=True)
class ManifestEntry:
    """One training clip: an absolute video path, its caption and an optional time range."""

    video: Path
    caption: str
    start: float | None = None
    end: float | None = None


# --------------------------------------------------------------------------- parsing helpers


def _manifest_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise ValueError(
        f"manifest {path}: unsupported file type {suffix or '(none)'!r}; "
        f"expected one of {', '.join(MANIFEST_SUFFIXES)}"
    )


def _iter_csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise ValueError(f"manifest {path}: empty manifest (no header row, no clips)")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"manifest {path}: missing column {missing[0]!r} (columns present: {', '.join(header)})"
        )
    reader.fieldnames = header
    for row in reader:
        if None in row:  # more cells than header names
            raise ValueError(
                f"manifest {path}, line {reader.line_num}: {len(header) + len(row[None])} cells "
                f"but the header has {len(header)} columns"
            )
        if all(v is None or not str(v).strip() for v in row.values()):
            continue  # blank line
        for col in REQUIRED_COLUMNS:
            if row.get(col) is None:
                raise ValueError(f"manifest {path}, line {reader.line_num}: no value for column {col!r}")
        yield reader.line_num, row


def _iter_jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest {path}, line {line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(
                f"manifest {path}, line {line_no}: expected a JSON object, got {type(row).__name__}"
            )
        for col in REQUIRED_COLUMNS:
            if col not in row:
                raise ValueError(
                    f"manifest {path}, line {line_no}: missing column {col!r} "
                    f"(keys present: {', '.join(map(str, row)) or 'none'})"
                )
        yield line_no, row


def _parse_seconds(value: Any, what: str, where: str) -> float | None:
    """Optional non-negative finite seconds; empty cells and JSON null mean "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where}: {what} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{where}: {what} must be finite and >= 0 seconds, got {value!r}")
    return seconds


def _entry_from_row(row: dict[str, Any], base: Path, where: str) -> ManifestEntry:
    video = row["video"]
    if not isinstance(video, str) or not video.strip():
        raise ValueError(f"{where}: 'video' must be a non-empty path, got {video!r}")
    caption = row["caption"]
    if caption is None:
        caption = ""
    if not isinstance(caption, str):
        raise ValueError(f"{where}: 'caption' must be text, got {type(caption).__name__}")
    start = _parse_seconds(row.get("start"), "start", where)
    end = _parse_seconds(row.get("end"), "end", where)
    if end is not None and end <= (start or 0.0):
        raise ValueError(f"{where}: end ({end:g} s) must be greater than start ({start or 0.0:g} s)")
    path = Path(os.path.normpath(base / os.path.expanduser(video.strip())))
    return ManifestEntry(video=path, caption=caption.strip(), start=start, end=end)


def _missing_videos_error(path: Path, missing: Sequence[Path], total: int) -> FileNotFoundError:
    shown = ", ".join(str(p) for p in missing[:_SHOW_MISSING])
    more = f", … and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
    return FileNotFoundError(
        f"manifest {path}: {len(missing)} of {total} videos not found: {shown}{more}"
    )


# --------------------------------------------------------------------------- public API


def load_manifest(path: str | os.PathLike[str], *, check_files: bool = True) -> list[ManifestEntry]:
    """Read and validate a CSV/JSONL manifest; relative video paths resolve against its folder.

    Raises ``FileNotFoundError`` when the manifest or any listed video is missing (naming the
    first few) and ``ValueError`` for an empty manifest, a missing column or a bad start/end.
    ``check_files=False`` skips the existence check (e.g. for remote mounts checked elsewhere).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    kind = _manifest_kind(path)
    text = path.read_text(encoding="utf-8-sig")
    base = path.absolute().parent
    rows = _iter_csv_rows(path, text) if kind == "csv" else _iter_jsonl_rows(path, text)
    entries = [_entry_from_row(row, base, f"manifest {path}, line {line}") for line, row in rows]
    if not entries:
        raise ValueError(f"manifest {path}: empty manifest (no clips listed)")
    if check_files:
        missing = [e.video for e in entries if not e.video.is_file()]
        if missing:
            raise _missing_videos_error(path, missing, len(entries))
    return entries


def _row_for(entry: ManifestEntry, base: Path) -> dict[str, Any]:
    rel = os.path.relpath(Path(entry.video).absolute(), base)
    row: dict[str, Any] = {"video": Path(rel).as_posix(), "caption": entry.caption}
    if entry.start is not None:
        row["start"] = entry.start
    if entry.end is not None:
        row["end"] = entry.end
    return row


def _atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_manifest(entries: Iterable[ManifestEntry], path: str | os.PathLike[str]) -> Path:
    """Write entries as CSV or JSONL (by suffix), with video paths relative to the file's folder."""
    path = Path(path)
    kind = _manifest_kind(path)
    base = path.absolute().parent
    rows = [_row_for(e, base) for e in entries]
    if not rows:
        raise ValueError(f"manifest {path}: refusing to write an empty manifest")
    if kind == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        has_range = any("start" in r or "end" in r for r in rows)
        fields = ["video", "caption"] + (["start", "end"] if has_range else [])
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    _atomic_write_text(path, text)
    return path


def parse_timestamp(value: Any) -> float:
    """Seconds from an InternVid timestamp (``"HH:MM:SS.mmm"``, ``"MM:SS"``) or a plain number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        parts = value.strip().split(":")
        if len(parts) > 3:
            raise ValueError(f"bad timestamp {value!r}: expected HH:MM:SS.mmm or seconds")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"bad timestamp {value!r}: expected HH:MM:SS.mmm or seconds") from None
        if any(n < 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
            raise ValueError(f"bad timestamp {value!r}: fields must be >= 0 and minutes/seconds < 60")
        seconds = 0.0
        for n in numbers:
            seconds = seconds * 60.0 + n
    else:
        raise ValueError(f"bad timestamp {value!r}: expected HH:MM:SS.mmm or seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad timestamp {value!r}: must be finite and >= 0")
    return seconds


#: InternVid annotation fields used (other fields, e.g. ``UMT_Score``, are ignored).
INTERNVID_FIELDS = ("YoutubeID", "Start_timestamp", "End_timestamp", "Caption")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")


def _files_under(root: Path) -> set[str]:
    """All file paths under ``root``, relative and POSIX-style, for O(1) existence checks."""
    found: set[str] = set()
    for folder, _dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        for name in files:
            found.add((rel / name).as_posix())
    return found


def _find_file(stem: str, files: set[str], extensions: Sequence[str]) -> str | None:
    for ext in extensions:
        if stem + ext in files:
            return stem + ext
    return None


def manifest_from_internvid(
    annotations_jsonl: str | os.PathLike[str],
    clips_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    clip_name: str = "{id}_{start}_{end}",
    video_name: str = "{id}",
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    min_aesthetic_score: float | None = None,
    max_entries: int | None = None,
) -> list[ManifestEntry]:
    """Build a manifest from InternVid annotations, keeping only clips found under ``clips_dir``.

    For each annotation line the clip is looked for, in order, as

    1. an already cut clip ``clips_dir/<clip_name><ext>`` – used whole (no start/end);
    2. the full downloaded video ``clips_dir/<video_name><ext>`` – used with the annotation's
       ``Start_timestamp``/``End_timestamp`` converted to seconds.

    Name templates may use ``{id}`` (YoutubeID), ``{start}``/``{end}`` (timestamps exactly as in
    the annotations) and ``{start_s}``/``{end_s}`` (seconds, floats; e.g. ``{start_s:.3f}``).
    ``min_aesthetic_score`` keeps lines whose ``Aesthetic_Score`` is at least that (the paper's
    subset uses 5.5); ``max_entries`` stops after that many clips.  The manifest is written to
    ``out_path`` (``.csv`` or ``.jsonl``) and the entries are returned.
    """
    annotations = Path(annotations_jsonl)
    clips = Path(clips_dir)
    out = Path(out_path)
    if not annotations.is_file():
        raise FileNotFoundError(f"InternVid annotations not found: {annotations}")
    if not clips.is_dir():
        raise FileNotFoundError(f"clips folder not found: {clips}")
    _manifest_kind(out)  # fail on an unsupported output suffix before scanning anything
    if max_entries is not None and max_entries < 1:
        raise ValueError(f"max_entries must be >= 1, got {max_entries}")
    exts = tuple(e if e.startswith(".") else "." + e for e in extensions)
    files = _files_under(clips)

    entries: list[ManifestEntry] = []
    seen = absent = below = 0
    with annotations.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{annotations}, line {line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            lacking = [k for k in INTERNVID_FIELDS if k not in rec]
            if lacking:
                raise ValueError(f"{where}: missing field {lacking[0]!r} (InternVid fields: "
                                 f"{', '.join(INTERNVID_FIELDS)})")
            seen += 1
            if min_aesthetic_score is not None:
                score = rec.get("Aesthetic_Score")
                if score is None:
                    raise ValueError(f"{where}: min_aesthetic_score is set but the line has no "
                                     f"'Aesthetic_Score'")
                if float(score) < min_aesthetic_score:
                    below += 1
                    continue
            try:
                start_s = parse_timestamp(rec["Start_timestamp"])
                end_s = parse_timestamp(rec["End_timestamp"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if end_s <= start_s:
                raise ValueError(f"{where}: End_timestamp {rec['End_timestamp']!r} is not after "
                                 f"Start_timestamp {rec['Start_timestamp']!r}")
            fields = dict(id=rec["YoutubeID"], start=rec["Start_timestamp"], end=rec["End_timestamp"],
                          start_s=start_s, end_s=end_s)
            caption = str(rec["Caption"] or "")
            clip_file = _find_file(clip_name.format(**fields), files, exts)
            if clip_file is not None:
                entries.append(ManifestEntry(clips / clip_file, caption))
            else:
                video_file = _find_file(video_name.format(**fields), files, exts)
                if video_file is None:
                    absent += 1
                    continue
                entries.append(ManifestEntry(clips / video_file, caption, start_s, end_s))
            if max_entries is not None and len(entries) >= max_entries:
                break
    if not entries:
        raise ValueError(
            f"none of the {seen} annotated clips in {annotations} were found under {clips} "
            f"(looked for '{clip_name}<ext>' and '{video_name}<ext>' with ext in {', '.join(exts)})"
        )
    write_manifest(entries, out)
    log.info("InternVid manifest %s: %d clips kept, %d not on disk, %d below aesthetic score",
             out, len(entries), absent, below)
    return entries
