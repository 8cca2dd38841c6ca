"""Reading the text prompts of an evaluation set: sequence name → description.

Accepted files: a JSON object ``{"blackswan": "a black swan on a green lake", ...}`` or a CSV
with two columns ``name,prompt`` (a header row ``name,prompt`` is optional; prompts that contain
commas must be quoted, as CSV requires).

`lc4 colorize DIR --prompts table.json` reads the same files with `load_colorize_table`, whose JSON
entries may also be objects that give a video its time-ranged prompts and colour keyframes::

    {"bear": "a brown bear",
     "film": {"prompt": ["0-120: a man in a grey suit", "121-: a woman in a yellow dress"],
              "keyframes": {"0": "refs/film0.png", "812": "refs/film812.png"}}}

Keyframe paths are relative to the table's folder. `load_prompts` accepts such objects too and
takes their prompt (a single string), so one table serves `lc4 colorize` and `lc4 evaluate`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["load_prompts", "load_colorize_table", "ColorizeEntry"]

#: the keys a JSON object entry of a colorize table may have
ENTRY_KEYS = ("prompt", "keyframes")


def _clean(mapping: Mapping[object, object], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in mapping.items():
        if isinstance(v, Mapping) and isinstance(v.get("prompt"), str):  # a colorize entry: its prompt
            v = v["prompt"]
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"prompts in {source} must map names to strings; got {k!r}: {v!r}")
        if v.strip():
            out[k.strip()] = v.strip()
    return out


def load_prompts(prompts: str | os.PathLike | Mapping[str, str] | None) -> dict[str, str]:
    """Prompts from a JSON/CSV file or a mapping (returned cleaned); None → {}."""
    if prompts is None:
        return {}
    if isinstance(prompts, Mapping):
        return _clean(prompts, "the given mapping")
    path = Path(prompts).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"prompts file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"prompts JSON {path} must be an object mapping names to prompts; got {type(data).__name__}")
        return _clean(data, str(path))
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["name", "prompt"]:
        rows = rows[1:]
    out: dict[str, str] = {}
    for i, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise ValueError(f"prompts CSV {path} row {i} must have 2 columns (name,prompt); got {len(row)}: {row!r}")
        out[row[0]] = row[1]
    return _clean(out, str(path))


@dataclass
class ColorizeEntry:
    """One video's line of a colorize table: its prompt entries and its colour keyframes."""

    prompts: list[str]
    keyframes: list[Any] = field(default_factory=list)  # lc4.keyframes.KeyframeSpec, sorted by frame


class _Pairs(dict):
    """A JSON object that remembers the keys it holds twice (json keeps only the last silently)."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        seen: set[str] = set()
        self.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]


def _entry(name: str, value: Any, path: Path) -> ColorizeEntry | None:
    from lc4.keyframes import keyframe_specs

    where = f"{path.name}, {name!r}"
    if isinstance(value, str):
        return ColorizeEntry([value.strip()]) if value.strip() else None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: an entry must be a prompt or an object with \"prompt\" (and \"keyframes\"); "
                         f"got {type(value).__name__}")
    unknown = [k for k in value if k not in ENTRY_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; an entry has "
                         f"{' and '.join(map(repr, ENTRY_KEYS))}")
    prompt = value.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{where}: \"prompt\" must be a non-empty string or a list of 'START-END: text' strings; "
                         f"got {prompt!r}")
    keys = value.get("keyframes", {})
    if not isinstance(keys, Mapping):
        raise ValueError(f"{where}: \"keyframes\" must map frame numbers to image paths, e.g. "
                         f"{{\"0\": \"ref0.png\"}}; got {type(keys).__name__}")
    label = f"{where} keyframe {{index}}"
    for k in getattr(keys, "repeated", ()):
        raise ValueError(f"{label.format(index=k)}: two keyframes for frame {k}; give one image per frame")
    bad = [k for k, v in keys.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{label.format(index=bad[0])}: a keyframe must be an image path, got {keys[bad[0]]!r}")
    images = {k: path.parent / Path(v).expanduser() for k, v in keys.items()}
    return ColorizeEntry([p.strip() for p in prompts], keyframe_specs(images, label))


def load_colorize_table(prompts: str | os.PathLike) -> dict[str, ColorizeEntry]:
    """The batch table of `lc4 colorize DIR --prompts FILE`: video name -> prompts and keyframes.

    CSV files and JSON strings give one prompt and no keyframes; JSON objects
    (`{"prompt": ..., "keyframes": {"FRAME": "path"}}`) may give time-ranged prompts (a list) and
    keyframes, whose paths are relative to the table's folder. A name or a keyframe given twice is
    an error, as is an unknown key. Entries with an empty prompt are dropped, as in `load_prompts`.
    Frame numbers are checked against each video, and images read, when the jobs are planned.
    """
    path = Path(prompts).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if not (path.suffix.lower() == ".json" or text.lstrip().startswith("{")):
        return {name: ColorizeEntry([prompt]) for name, prompt in load_prompts(path).items()}
    try:
        data = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"prompts file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"prompts JSON {path} must be an object mapping names to prompts; "
                         f"got {type(data).__name__}")
    for name in data.repeated:
        raise ValueError(f"{path.name}: the name {name!r} appears twice; give each video one entry")
    table = {}
    for name, value in data.items():
        entry = _entry(name.strip(), value, path)
        if entry is not None:
            table[name.strip()] = entry
    return table
