"""The evaluation report: per-video and dataset values, written as JSON, CSV and Markdown.

Columns follow the L-C4 tables (Color., PSNR, SSIM, LPIPS, FVD, CDC ×1000), then the extra
metrics. A value that could not be computed (missing weights, no prompt, …) is ``None`` in
Python, ``null`` in JSON and ``n/a`` in CSV/Markdown — never 0. An infinite PSNR (identical
frames) is ``inf`` (the string ``"inf"`` in JSON, which has no infinity); the finite
``psnr_capped`` column sits beside it. A video the harness flagged (length mismatch, CDC n/a for
fewer than 2 frames, …) carries ``flags``: a list in JSON, a ``flags`` column in CSV and a
``Flags`` column in Markdown, which also counts the flagged videos under the summary table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PAPER_METRICS", "EXTRA_METRICS", "ALL_METRICS", "COLUMNS", "Report", "format_value"]

PAPER_METRICS: tuple[str, ...] = ("colorfulness", "psnr", "ssim", "lpips", "fvd", "cdc")
EXTRA_METRICS: tuple[str, ...] = ("fid", "clip_score", "warp_error")
ALL_METRICS: tuple[str, ...] = PAPER_METRICS + EXTRA_METRICS

#: key → (Markdown header, decimals). ``psnr_capped`` and ``cdc_raw`` accompany psnr and cdc.
COLUMNS: dict[str, tuple[str, int]] = {
    "colorfulness": ("Color. ↑", 2),
    "psnr": ("PSNR ↑", 2),
    "psnr_capped": ("PSNR (capped) ↑", 2),
    "ssim": ("SSIM ↑", 3),
    "lpips": ("LPIPS ↓", 3),
    "fvd": ("FVD ↓", 2),
    "cdc": ("CDC ×1000 ↓", 3),
    "cdc_raw": ("CDC raw ↓", 6),
    "fid": ("FID ↓", 2),
    "clip_score": ("CLIP ↑", 2),
    "warp_error": ("E_warp ↓", 5),
}


def format_value(value: float | int | None, decimals: int = 4) -> str:
    """``n/a`` for None, ``inf`` for ±inf, else fixed decimals (ints as is)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def report_paths(output: str | os.PathLike) -> list[Path]:
    """The files ``Report.save(output)`` writes: ``PREFIX.json``, ``.csv``, ``.md`` (``report.*`` in a folder)."""
    out = Path(output).expanduser()
    if out.is_dir() or str(output).endswith(("/", os.sep)):
        prefix = out / "report"
    elif out.suffix.lower() in {".json", ".csv", ".md"}:
        prefix = out.with_suffix("")
    else:
        prefix = out
    return [prefix.with_name(f"{prefix.name}.{ext}") for ext in ("json", "csv", "md")]


@dataclass
class Report:
    """Results of one method on one set. ``per_video[name][key]`` and ``dataset[key]`` hold values."""

    name: str
    metrics: list[str]
    per_video: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: dict[str, float | None] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def columns(self, markdown: bool = False) -> list[str]:
        """Value columns in table order for the requested metrics."""
        cols: list[str] = []
        for m in ALL_METRICS:
            if m not in self.metrics:
                continue
            cols.append(m)
            if m == "psnr" and (not markdown or self._any_inf_psnr()):
                cols.append("psnr_capped")
            if m == "cdc" and not markdown:
                cols.append("cdc_raw")
        return cols

    def _flagged(self) -> list[str]:
        return [name for name, vals in self.per_video.items() if vals.get("flags")]

    @staticmethod
    def _flags(vals: dict[str, Any]) -> str:
        return "; ".join(str(f) for f in vals.get("flags") or [])

    def _any_inf_psnr(self) -> bool:
        vals = [self.dataset.get("psnr")] + [v.get("psnr") for v in self.per_video.values()]
        return any(isinstance(v, float) and math.isinf(v) for v in vals)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inf as the string "inf", missing as None)."""
        return _json_value(
            {
                "name": self.name,
                "metrics": list(self.metrics),
                "sources": dict(self.sources),
                "conventions": dict(self.conventions),
                "dataset": dict(self.dataset),
                "per_video": {k: dict(v) for k, v in self.per_video.items()},
                "notes": list(self.notes),
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        """One row per video, then a ``mean`` row with the dataset values."""
        cols = self.columns()
        flagged = bool(self._flagged())
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["video", "frames", *cols, *(["flags"] if flagged else [])])
        for name, vals in self.per_video.items():
            extra = [self._flags(vals)] if flagged else []
            writer.writerow([name, vals.get("frames", ""), *(format_value(vals.get(c), 8) for c in cols), *extra])
        total = sum(int(v.get("frames", 0) or 0) for v in self.per_video.values())
        extra = [f"{len(self._flagged())} flagged"] if flagged else []
        writer.writerow(["mean", total, *(format_value(self.dataset.get(c), 8) for c in cols), *extra])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The paper-style summary table, the per-video table, conventions and notes."""
        cols = self.columns(markdown=True)
        heads = [COLUMNS[c][0] for c in cols]

        def row(label: str, vals: dict[str, Any]) -> str:
            cells = [format_value(vals.get(c), COLUMNS[c][1]) for c in cols]
            return "| " + " | ".join([label, *cells]) + " |"

        sep = "|" + "---|" * (len(cols) + 1)
        frames = sum(int(v.get("frames", 0) or 0) for v in self.per_video.values())
        flagged = self._flagged()
        summary = f"{len(self.per_video)} videos, {frames} frames."
        if flagged:
            summary += f" **{len(flagged)} flagged** (see the Flags column and the notes): {', '.join(flagged[:10])}"
            summary += " …" if len(flagged) > 10 else "."
        lines = [f"# Evaluation: {self.name}", "", summary, "", "| Method | " + " | ".join(heads) + " |", sep, row(self.name, self.dataset), ""]
        flag_head = " Flags |" if flagged else ""
        lines += ["## Per video", "", "| Video | Frames | " + " | ".join(heads) + " |" + flag_head,
                  "|---" * (len(cols) + 2 + bool(flagged)) + "|"]
        for name, vals in self.per_video.items():
            cells = [format_value(vals.get(c), COLUMNS[c][1]) for c in cols]
            if flagged:
                cells.append(self._flags(vals).replace("|", "/"))
            lines.append("| " + " | ".join([name, str(vals.get("frames", "")), *cells]) + " |")
        lines += ["", "## Conventions", ""]
        lines += [f"- {k}: {v}" for k, v in self.conventions.items()]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def save(self, output: str | os.PathLike) -> dict[str, Path]:
        """Write ``.json``, ``.csv`` and ``.md``.

        ``output`` is a folder (existing, or given with a trailing slash) → ``report.*`` inside
        it; otherwise a path prefix → ``<prefix>.json`` etc. (a known suffix is dropped first).
        """
        paths = dict(zip(("json", "csv", "md"), report_paths(output)))
        _atomic_write(paths["json"], self.to_json())
        _atomic_write(paths["csv"], self.to_csv())
        _atomic_write(paths["md"], self.to_markdown())
        return paths
