"""Reading the text prompts of an evaluation set: sequence name → description.

Accepted files: a JSON object ``{"blackswan": "a black swan on a green lake", ...}`` or a CSV
with two columns ``name,prompt`` (a header row ``name,prompt`` is optional; prompts that contain
commas must be quoted, as CSV requires).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Mapping

__all__ = ["load_prompts"]


def _clean(mapping: Mapping[object, object], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in mapping.items():
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
