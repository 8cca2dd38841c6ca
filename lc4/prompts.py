"""Prompt schedules: one sentence for the whole video, or different sentences for time ranges.

Syntax (CLI `--prompt`, repeatable, or a list in the API): ``"TEXT"`` for the whole video, or
``"START-END: TEXT"`` with inclusive frame numbers, where END may be left open (``"121-: ..."``).
Every frame must be covered exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d*)\s*:\s*(.*)$", re.S)


@dataclass(frozen=True)
class PromptSchedule:
    """Distinct prompts and, per frame, the index of the prompt that applies."""

    prompts: tuple[str, ...]
    frame_prompt: torch.Tensor  # (T,) long

    @property
    def num_frames(self) -> int:
        return int(self.frame_prompt.numel())


def parse_prompt_schedule(prompt: str | Sequence[str], num_frames: int) -> PromptSchedule:
    """Parse one prompt or a list of ``START-END: TEXT`` entries into a per-frame schedule."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    entries = [prompt] if isinstance(prompt, str) else list(prompt)
    if not all(isinstance(e, str) for e in entries):
        raise ValueError("prompts must be strings")
    if not entries:
        raise ValueError("no prompt given")
    ranged = [_RANGE.match(e) for e in entries]
    if len(entries) == 1 and ranged[0] is None:
        text = entries[0].strip()
        if not text:
            raise ValueError("the prompt is empty: describe the colours, e.g. 'a girl in a red coat'")
        return PromptSchedule((text,), torch.zeros(num_frames, dtype=torch.long))
    owner = torch.full((num_frames,), -1, dtype=torch.long)
    texts: list[str] = []
    for entry, m in zip(entries, ranged):
        if m is None:
            raise ValueError(f"prompt {entry!r} has no frame range: with several prompts each needs 'START-END: text'")
        start, end = int(m.group(1)), int(m.group(2)) if m.group(2) else num_frames - 1
        text = m.group(3).strip()
        if not text:
            raise ValueError(f"the prompt for frames {start}-{end} is empty")
        if start > end or start >= num_frames:
            raise ValueError(f"frame range {start}-{end} is empty or outside the video's {num_frames} frames")
        end = min(end, num_frames - 1)
        if (owner[start : end + 1] >= 0).any():
            raise ValueError(f"frame range {start}-{end} overlaps another prompt's range")
        if text not in texts:
            texts.append(text)
        owner[start : end + 1] = texts.index(text)
    gaps = _runs((owner < 0).nonzero().flatten().tolist())
    if gaps:
        shown = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in gaps[:3]) + (", ..." if len(gaps) > 3 else "")
        raise ValueError(f"frames {shown} have no prompt (the video has {num_frames} frames; "
                         f"{int((owner < 0).sum())} uncovered)")
    return PromptSchedule(tuple(texts), owner)


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers → (first, last) of each run of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def prompt_text(entry: str) -> str:
    """The text of one schedule entry: ``"START-END: TEXT"`` → ``TEXT``, a plain prompt unchanged."""
    m = _RANGE.match(entry)
    return (m.group(3) if m else entry).strip()


def truncated_words(tokenizer, prompt: str) -> str:
    """The part of `prompt` that falls beyond the tokenizer's window ('' when it fits), as the user wrote it.

    The window holds `model_max_length` tokens including the start and end tokens (77 for CLIP, so
    75 text tokens). With a fast tokenizer the cut is located by character offsets, so the returned
    text is verbatim; otherwise the dropped tokens are decoded (lower-cased, re-spaced).
    """
    limit = tokenizer.model_max_length
    quiet = {"verbose": False}  # no "sequence length is longer than..." warning on stderr: we report it
    try:
        enc = tokenizer(prompt, truncation=False, return_offsets_mapping=True, **quiet)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        enc, offsets = tokenizer(prompt, truncation=False, **quiet), None
    ids = enc["input_ids"]
    if len(ids) <= limit:
        return ""
    first_dropped = limit - 1  # ids[0] is the start token; ids[1 : limit - 1] fit
    if offsets is not None:
        return prompt[offsets[first_dropped][0]:].strip()
    return tokenizer.decode(ids[first_dropped:-1], skip_special_tokens=True).strip()
