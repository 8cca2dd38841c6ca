"""Colour-word mask M of Cross-Modality Pre-Fusion (CMPF, paper §3.3, SPEC §1).

CMPF's masked cross-attention updates the CLIP text embedding of every prompt token from the
grey frames except the colour-related ones, which keep CLIP's meaning. This module finds those
tokens: it reads the maintained colour vocabulary (``color_words.txt``), splits a prompt into
words exactly as the CLIP tokenizer does (:func:`lc4.models.tokenizer.align_pieces`), applies
the word rules (colour words, modifiers before a colour, multiword names, hyphen compounds) and
marks every BPE token of the matched words.

Convention: ``True`` = colour token (excluded from the cross-attention update). Positions follow
``tokenizer(prompt, padding="max_length", max_length=77, truncation=True)``: BOS at 0, content
tokens from 1, EOS and padding after; BOS/EOS/padding are always ``False``.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

import torch

from lc4.models.tokenizer import CLIP_MAX_LENGTH, Piece, align_pieces

DEFAULT_VOCABULARY_PATH = Path(__file__).with_name("color_words.txt")

# Section of color_words.txt → role of its entries.
SECTION_ROLES: dict[str, str] = {
    "basic": "color",
    "names": "color",
    "derived": "color",
    "colorish": "color",
    "modifiers": "modifier",
    "qualifiers": "modifier",
    "suffixes": "suffix",
    "connectors": "connector",
    "phrases": "phrase",
}
HYPHENS = frozenset("-\u2010\u2011")  # hyphen-minus, hyphen, non-breaking hyphen

Link = Literal["space", "hyphen", "none"]


@dataclass(frozen=True)
class ColorVocabulary:
    """Parsed colour vocabulary; all entries lowercase NFC letter runs."""

    colors: frozenset[str]
    modifiers: frozenset[str]
    suffixes: frozenset[str]
    connectors: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]  # longest first
    sections: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def is_color(self, word: str) -> bool:
        """A colour word, or ``<colour>ish`` (stem, stem + "e", or doubled consonant)."""
        if word in self.colors:
            return True
        if len(word) > 4 and word.endswith("ish"):
            stem = word[:-3]
            doubled = len(stem) > 2 and stem[-1] == stem[-2]
            return (stem in self.colors or stem + "e" in self.colors
                    or (doubled and stem[:-1] in self.colors))
        return False


def _is_letter_run(word: str) -> bool:
    return bool(word) and all(unicodedata.category(ch).startswith("L") for ch in word)


def _normalize_entry(entry: str) -> str:
    return " ".join(unicodedata.normalize("NFC", entry).lower().split())


def parse_color_vocabulary(text: str, source: str = "<string>") -> ColorVocabulary:
    """Parse the ``color_words.txt`` format (sections, one entry a line, ``#`` comments)."""
    sections: dict[str, list[str]] = {name: [] for name in SECTION_ROLES}
    owner: dict[str, str] = {}
    current: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _normalize_entry(raw.split("#", 1)[0])
        if not line:
            continue
        where = f"{source}:{lineno}"
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            if current not in SECTION_ROLES:
                raise ValueError(f"{where}: unknown section [{current}]; expected one of "
                                 f"{', '.join(SECTION_ROLES)}")
            continue
        if current is None:
            raise ValueError(f"{where}: entry {line!r} before any [section] header")
        if current == "phrases":
            words = line.replace("-", " ").split()
            if len(words) < 2 or not all(map(_is_letter_run, words)):
                raise ValueError(f"{where}: a phrase needs two or more letter-only words "
                                 f"separated by spaces or hyphens, got {line!r}")
            sections[current].append(" ".join(words))
            continue
        if not _is_letter_run(line):
            raise ValueError(f"{where}: entries of [{current}] must be one word of letters "
                             f"only (CLIP splits at anything else), got {line!r}")
        if line in owner:
            raise ValueError(f"{where}: {line!r} is listed twice ([{owner[line]}] and "
                             f"[{current}]); keep one")
        owner[line] = current
        sections[current].append(line)

    def words_of(role: str) -> frozenset[str]:
        return frozenset(w for name, r in SECTION_ROLES.items() if r == role
                         for w in sections[name])

    phrases = sorted({tuple(p.split()) for p in sections["phrases"]}, key=lambda p: (-len(p), p))
    return ColorVocabulary(
        colors=words_of("color"),
        modifiers=words_of("modifier"),
        suffixes=words_of("suffix"),
        connectors=words_of("connector"),
        phrases=tuple(phrases),
        sections={name: tuple(entries) for name, entries in sections.items()},
    )


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> ColorVocabulary:
    return parse_color_vocabulary(Path(path).read_text(encoding="utf-8"), source=path)


def load_color_vocabulary(path: str | os.PathLike | None = None) -> ColorVocabulary:
    """Load a colour vocabulary file (default: the packaged ``color_words.txt``); cached."""
    file = Path(path) if path is not None else DEFAULT_VOCABULARY_PATH
    if not file.is_file():
        raise FileNotFoundError(f"colour vocabulary file not found: {str(file)!r}")
    return _load_cached(str(file.resolve()), file.stat().st_mtime_ns)


def resolve_vocabulary(vocabulary: ColorVocabulary | str | os.PathLike | None) -> ColorVocabulary:
    """`vocabulary` itself, or the vocabulary file it names (None: the maintained `color_words.txt`)."""
    if isinstance(vocabulary, ColorVocabulary):
        return vocabulary
    return load_color_vocabulary(vocabulary)


# --------------------------------------------------------------------------------------------
# Word rules
# --------------------------------------------------------------------------------------------


def _word_links(pieces: Sequence[Piece]) -> tuple[list[int], list[Link]]:
    """Indices of word pieces (letter runs) and how each word joins the next one.

    ``space``: nothing but whitespace between; ``hyphen``: exactly one hyphen piece touching
    both words ("navy-blue"); ``none``: anything else (punctuation, digits, end).
    """
    words = [i for i, p in enumerate(pieces) if p.kind == "letters"]
    links: list[Link] = []
    for a, b in zip(words, words[1:]):
        if b == a + 1:
            links.append("space")
        elif (b == a + 2 and pieces[a + 1].text in HYPHENS
              and pieces[a].end == pieces[a + 1].start and pieces[a + 1].end == pieces[b].start):
            links.append("hyphen")
        else:
            links.append("none")
    links.append("none")
    return words, links


def color_piece_flags(pieces: Sequence[Piece],
                      vocabulary: ColorVocabulary | str | os.PathLike | None = None) -> list[bool]:
    """Which pieces belong to a colour word (the rules of ``docs/color_words.md``)."""
    vocab = resolve_vocabulary(vocabulary)
    words, links = _word_links(pieces)
    text = [pieces[i].text for i in words]
    n = len(words)
    masked = [vocab.is_color(w) for w in text]

    # Multiword names: words joined by spaces or hyphens; longest phrase first.
    i = 0
    while i < n:
        for phrase in vocab.phrases:
            k = len(phrase)
            if (tuple(text[i : i + k]) == phrase
                    and all(links[j] != "none" for j in range(i, i + k - 1))):
                masked[i : i + k] = [True] * k
                i += k - 1
                break
        i += 1

    # Modifiers / qualifiers: only directly before a masked word (chains: "pale sky blue").
    for i in range(n - 2, -1, -1):
        if text[i] in vocab.modifiers and links[i] != "none" and masked[i + 1]:
            masked[i] = True

    # Hyphen compounds: suffixes after a masked word, connectors between two masked words.
    for i in range(1, n):
        if masked[i] or links[i - 1] != "hyphen" or not masked[i - 1]:
            continue
        if text[i] in vocab.suffixes:
            masked[i] = True
        elif (text[i] in vocab.connectors and i + 1 < n and links[i] == "hyphen"
              and (masked[i + 1] or vocab.is_color(text[i + 1]))):
            masked[i] = True

    flags = [False] * len(pieces)
    for i, piece_index in enumerate(words):
        flags[piece_index] = masked[i]
        if links[i] == "hyphen" and masked[i] and masked[i + 1]:
            flags[piece_index + 1] = True  # the hyphen inside a colour compound
    return flags


# --------------------------------------------------------------------------------------------
# Token masks
# --------------------------------------------------------------------------------------------


def _check_max_length(max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2 (BOS + EOS), got {max_length!r}")


def _window(piece: Piece, max_length: int) -> range:
    """Sequence positions of a piece's tokens that survive truncation (BOS + content + EOS)."""
    last_content = max_length - 2  # content tokens 0 .. max_length-3 sit at 1 .. max_length-2
    return range(1 + min(piece.token_start, last_content), 1 + min(piece.token_end, last_content))


def color_word_mask(prompt: str, tokenizer, max_length: int = CLIP_MAX_LENGTH,
                    vocabulary: ColorVocabulary | str | os.PathLike | None = None
                    ) -> torch.Tensor:
    """Bool mask (max_length,): True at every CLIP token of a colour word in ``prompt``.

    Aligned with ``tokenizer(prompt, padding="max_length", max_length=max_length,
    truncation=True)["input_ids"]``; sub-tokens cut off by truncation are simply absent.
    """
    _check_max_length(max_length)
    pieces = align_pieces(prompt, tokenizer)
    mask = torch.zeros(max_length, dtype=torch.bool)
    for piece, flag in zip(pieces, color_piece_flags(pieces, vocabulary)):
        if flag:
            positions = _window(piece, max_length)
            mask[positions.start : positions.stop] = True
    return mask


def color_word_masks(prompts: Sequence[str], tokenizer, max_length: int = CLIP_MAX_LENGTH,
                     vocabulary: ColorVocabulary | str | os.PathLike | None = None
                     ) -> torch.Tensor:
    """Batched :func:`color_word_mask`: bool tensor (B, max_length)."""
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of strings, got a single str; "
                         "use color_word_mask for one prompt")
    _check_max_length(max_length)
    vocab = resolve_vocabulary(vocabulary)
    rows = [color_word_mask(p, tokenizer, max_length, vocab) for p in prompts]
    if not rows:
        return torch.zeros(0, max_length, dtype=torch.bool)
    return torch.stack(rows)


def masked_words(prompt: str, tokenizer, max_length: int = CLIP_MAX_LENGTH,
                 vocabulary: ColorVocabulary | str | os.PathLike | None = None) -> list[str]:
    """The (normalized) words whose tokens :func:`color_word_mask` marks, in prompt order.

    Hyphen compounds are listed word by word ("navy-blue" → "navy", "blue"); words entirely
    beyond the truncation window are left out.
    """
    _check_max_length(max_length)
    pieces = align_pieces(prompt, tokenizer)
    flags = color_piece_flags(pieces, vocabulary)
    return [p.text for p, flag in zip(pieces, flags)
            if flag and p.kind == "letters" and len(_window(p, max_length)) > 0]
