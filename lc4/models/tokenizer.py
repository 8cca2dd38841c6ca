"""CLIP BPE tokenizer: loading (offline-capable) and CLIP's word-level pre-tokenization.

Stable Diffusion 1.5 conditions on CLIP ViT-L/14 text features, so every prompt goes through
the CLIP BPE tokenizer (49408 tokens, ``<|startoftext|>`` = 49406, ``<|endoftext|>`` = 49407,
77 positions, padded with ``<|endoftext|>``). No weights can be downloaded on the development
machines, but the BPE merges ship inside the ``open_clip_torch`` wheel, which is enough to
rebuild the exact tokenizer without importing ``open_clip`` (that import needs torchvision).

The second half of the module reproduces how the Hugging Face CLIP tokenizer splits a prompt
into pre-tokens ("pieces": letter runs, single digits, punctuation runs, contractions) before
BPE. Because BPE never merges across pieces, tokenizing piece by piece gives exactly the ids of
the whole prompt, which is what makes word → token alignment exact (see
:func:`align_pieces` and ``docs/color_words.md``).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Sequence

import transformers

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
CLIP_MAX_LENGTH = 77
# CLIP keeps 49152 - 256 - 2 merges of its BPE file (OpenAI's SimpleTokenizer does the same slice).
CLIP_NUM_MERGES = 49152 - 256 - 2
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_NUM_MERGES + 2
OPEN_CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"

# A hub id is "name" or "owner/name"; anything else is treated as a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


# --------------------------------------------------------------------------------------------
# Building the vocabulary
# --------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """Byte → printable character table of byte-level BPE (GPT-2 / CLIP).

    Printable Latin-1 bytes map to themselves; the 68 others (controls, space, soft hyphen…) are
    moved, in byte order, to code points 256, 257, … so that BPE never sees whitespace.
    Insertion order (printable bytes first, then the moved ones) is CLIP's vocabulary order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    for offset, byte in enumerate(shifted):
        table[byte] = chr(256 + offset)
    return table


def find_open_clip_bpe() -> Path | None:
    """Path of the CLIP BPE file inside the installed ``open_clip`` package, without importing it."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / OPEN_CLIP_BPE_FILE
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=4)
def read_clip_bpe(bpe_path: str) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Read a CLIP ``bpe_simple_vocab_16e6.txt.gz`` file into (vocab, merges), CLIP's way.

    Vocabulary order: the 256 byte characters, the same with ``</w>`` appended, one entry per
    merge (the merged pair), then ``<|startoftext|>`` and ``<|endoftext|>`` (ids 49406, 49407).
    """
    with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    # Line 0 is the "#version" header.
    merges = tuple(tuple(line.split()) for line in lines[1 : CLIP_NUM_MERGES + 1])
    if len(merges) != CLIP_NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(
            f"{bpe_path}: expected {CLIP_NUM_MERGES} BPE merges of two symbols each, "
            f"found {len(merges)} lines"
        )
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"{bpe_path}: vocabulary has {len(vocab)} distinct entries, "
                         f"expected {CLIP_VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


def _tokenizer_kwargs(max_length: int) -> dict:
    return dict(bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
                pad_token=EOS_TOKEN, model_max_length=max_length)


def _construct_from_files(vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                          max_length: int) -> transformers.CLIPTokenizer:
    """Build via ``vocab.json`` + ``merges.txt`` in a temporary folder (every transformers version)."""
    with tempfile.TemporaryDirectory(prefix="lc4_clip_tokenizer_") as folder:
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
            json.dump(vocab, handle, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as handle:
            handle.write("#version: 0.2\n")
            handle.writelines(f"{a} {b}\n" for a, b in merges)
        return transformers.CLIPTokenizer.from_pretrained(folder, **_tokenizer_kwargs(max_length))


def _construct(vocab: dict[str, int], merges: Sequence[tuple[str, str]],
               max_length: int) -> transformers.CLIPTokenizer:
    """Build from in-memory vocab/merges (transformers ≥ 5), else fall back to files (4.x)."""
    try:
        return transformers.CLIPTokenizer(vocab=dict(vocab), merges=list(merges),
                                          **_tokenizer_kwargs(max_length))
    except TypeError:  # transformers 4.x: CLIPTokenizer(vocab_file, merges_file, ...)
        return _construct_from_files(vocab, merges, max_length)


def _is_tokenizer_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _checked(tokenizer: transformers.CLIPTokenizer, source: str) -> transformers.CLIPTokenizer:
    """Reject the near-empty tokenizer transformers 5 returns when no vocabulary file was found."""
    if len(tokenizer) < CLIP_VOCAB_SIZE or tokenizer.eos_token_id is None:
        raise FileNotFoundError(f"no CLIP vocabulary at {source!r}: the loaded tokenizer has "
                                f"{len(tokenizer)} tokens, a CLIP one has {CLIP_VOCAB_SIZE}")
    return tokenizer


def _load_pretrained(path: str, max_length: int) -> transformers.CLIPTokenizer:
    local = Path(path).expanduser()
    if local.exists() or not _HUB_ID.match(path):
        if not local.is_dir():
            raise FileNotFoundError(f"CLIP tokenizer folder not found: {path!r}")
        if _is_tokenizer_folder(local):
            folder = local
        elif _is_tokenizer_folder(local / "tokenizer"):  # a whole SD1.5 checkout
            folder = local / "tokenizer"
        else:
            raise FileNotFoundError(
                f"{path!r} holds no tokenizer: expected {' or '.join(_TOKENIZER_FILES)} "
                f"in it or in its 'tokenizer/' subfolder"
            )
        loaded = transformers.CLIPTokenizer.from_pretrained(str(folder),
                                                            model_max_length=max_length)
        return _checked(loaded, str(folder))
    errors = []
    for subfolder in ("", "tokenizer"):  # a tokenizer repo, or an SD1.5 pipeline repo
        try:
            loaded = transformers.CLIPTokenizer.from_pretrained(
                path, subfolder=subfolder, model_max_length=max_length)
            return _checked(loaded, f"{path}/{subfolder}".rstrip("/"))
        except (OSError, ValueError) as error:  # FileNotFoundError is an OSError
            errors.append(str(error).splitlines()[0][:200])
    raise FileNotFoundError(f"could not load a CLIP tokenizer for hub id {path!r} "
                            f"(offline, or no tokenizer there): {'; '.join(errors)}")


def load_clip_tokenizer(path: str | os.PathLike | None = None,
                        max_length: int = CLIP_MAX_LENGTH) -> transformers.CLIPTokenizer:
    """Load the CLIP BPE tokenizer used by Stable Diffusion 1.5.

    Args:
        path: a tokenizer folder (``save_pretrained`` output or SD1.5's ``tokenizer/``), an SD1.5
            checkout containing ``tokenizer/``, a CLIP ``*.txt.gz`` BPE file, or a hub id (needs
            network). ``None`` builds it offline from the BPE file bundled with ``open_clip_torch``.
        max_length: ``model_max_length`` of the result (77 for CLIP / SD1.5).
    """
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2 (BOS + EOS), got {max_length!r}")
    if path is not None:
        path = os.fspath(path)
        if path.endswith(".gz"):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"CLIP BPE file not found: {path!r}")
            return _construct(*read_clip_bpe(os.path.abspath(path)), max_length)
        return _load_pretrained(path, max_length)
    bpe = find_open_clip_bpe()
    if bpe is None:
        raise FileNotFoundError(
            "no CLIP vocabulary available: pass path= (an SD1.5 'tokenizer/' folder, a "
            "save_pretrained folder or a hub id), or install open_clip_torch (pip install "
            f"--no-deps open_clip_torch) whose wheel ships {OPEN_CLIP_BPE_FILE}"
        )
    return _construct(*read_clip_bpe(str(bpe)), max_length)


# --------------------------------------------------------------------------------------------
# CLIP pre-tokenization and piece → token alignment
# --------------------------------------------------------------------------------------------

PieceKind = Literal["letters", "number", "symbols", "contraction", "special"]

# Unicode White_Space (what the tokenizer's regex engine calls \s); str.isspace() differs
# (it also accepts U+001C..U+001F), so the set is spelled out.
_WHITE_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                         + "".join(chr(c) for c in range(0x2000, 0x200B)))
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_PATTERN_SPECIALS = (BOS_TOKEN, EOS_TOKEN)


@dataclass(frozen=True)
class Piece:
    """One CLIP pre-token: ``text`` (normalized) and its kind; token span filled by alignment.

    ``start``/``end`` index the normalized prompt (see :func:`normalize_prompt`), ``tokens`` are
    the BPE ids of this piece alone and ``token_start`` its offset among the prompt's content
    tokens (BOS excluded).
    """

    text: str
    kind: PieceKind
    start: int
    end: int
    tokens: tuple[int, ...] = ()
    token_start: int = 0

    @property
    def token_end(self) -> int:
        return self.token_start + len(self.tokens)


def normalize_prompt(text: str) -> str:
    """The CLIP tokenizer's normalizer: NFC, every whitespace run → one space, lowercase."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if ch in _WHITE_SPACE else ch for ch in text)
    text = re.sub(" +", " ", text)
    # Per character: the tokenizer's Lowercase has no context rules (final sigma stays σ).
    return "".join(ch.lower() for ch in text)


def _char_class(ch: str) -> str:
    if ch in _WHITE_SPACE:
        return "space"
    category = unicodedata.category(ch)[0]
    return {"L": "letter", "N": "number"}.get(category, "symbol")


def clip_pretokenize(text: str, offset: int = 0) -> list[Piece]:
    """Split already-normalized text into CLIP pre-tokens.

    Mirrors CLIP's pattern ``<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|``
    ``[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`` (alternatives tried in that order, leftmost
    first; whitespace dropped). As in the Hugging Face tokenizer, whose byte-level step re-splits
    with GPT-2's pattern, a special-token match becomes three pieces ``<|``, ``endoftext``,
    ``|>``; special tokens typed verbatim are split out before normalization by
    :func:`prompt_pieces`.
    """
    pieces: list[Piece] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        kind = _char_class(ch)
        if kind == "space":
            i += 1
            continue
        special = next((t for t in _PATTERN_SPECIALS if text.startswith(t, i)), None)
        if special is not None:
            word_end = i + len(special) - 2
            pieces += [Piece("<|", "symbols", offset + i, offset + i + 2),
                       Piece(special[2:-2], "letters", offset + i + 2, offset + word_end),
                       Piece("|>", "symbols", offset + word_end, offset + word_end + 2)]
            i += len(special)
            continue
        contraction = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
        if contraction is not None:
            j, piece_kind = i + len(contraction), "contraction"
        elif kind == "letter":
            j = i + 1
            while j < n and _char_class(text[j]) == "letter":
                j += 1
            piece_kind = "letters"
        elif kind == "number":
            j, piece_kind = i + 1, "number"
        else:
            j = i + 1
            while j < n and _char_class(text[j]) == "symbol":
                j += 1
            piece_kind = "symbols"
        pieces.append(Piece(text[i:j], piece_kind, offset + i, offset + j))
        i = j
    return pieces


def _split_added_tokens(prompt: str, added: Sequence[str]) -> list[tuple[str, bool]]:
    """Split raw text on literal added/special tokens (matched before normalization, longest first)."""
    if not added:
        return [(prompt, False)]
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    parts: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(prompt):
        parts.append((prompt[last : match.start()], False))
        parts.append((match.group(0), True))
        last = match.end()
    parts.append((prompt[last:], False))
    return [p for p in parts if p[0]]


def _piece_kind(text: str) -> PieceKind:
    if text in _CONTRACTIONS:
        return "contraction"
    head = _char_class(text[0])
    return "letters" if head == "letter" else "number" if head == "number" else "symbols"


Normalizer = Callable[[str], str]
PreTokenizer = Callable[[str, int], list[Piece]]


def prompt_pieces(prompt: str, added_tokens: Sequence[str] = (BOS_TOKEN, EOS_TOKEN),
                  normalize: Normalizer = normalize_prompt,
                  pretokenize: PreTokenizer = clip_pretokenize,
                  normalized_tokens: Sequence[str] = ()) -> list[Piece]:
    """Pre-tokenize a raw prompt the way the tokenizer does, in three steps.

    ``added_tokens`` (the special tokens) are split out of the raw text verbatim; the rest is
    normalized, ``normalized_tokens`` (added tokens flagged ``normalized``, e.g. textual
    inversion words) are split out of the normalized text, and what remains is pre-tokenized.
    Offsets index the concatenation of the normalized segments and the added tokens, which is
    ``normalize(prompt)`` whenever the prompt contains no special token.
    """
    pieces: list[Piece] = []
    offset = 0
    for segment, is_added in _split_added_tokens(prompt, added_tokens):
        if is_added:
            pieces.append(Piece(segment, "special", offset, offset + len(segment)))
            offset += len(segment)
            continue
        for part, is_word in _split_added_tokens(normalize(segment), normalized_tokens):
            if is_word:
                pieces.append(Piece(part, "special", offset, offset + len(part)))
            else:
                pieces.extend(pretokenize(part, offset))
            offset += len(part)
    return pieces


def _added_tokens(tokenizer, normalize: Normalizer) -> tuple[list[str], list[str]]:
    """(raw-matched, normalized-matched) added tokens of ``tokenizer``."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    raw = [t.content for t in decoder.values() if not getattr(t, "normalized", False)]
    normalized = [normalize(t.content) for t in decoder.values() if getattr(t, "normalized", False)]
    return (raw or [BOS_TOKEN, EOS_TOKEN]), normalized


def _backend_steps(tokenizer) -> tuple[Normalizer, PreTokenizer] | None:
    """The fast tokenizer's own normalizer and pre-tokenizer, if it exposes them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    pre_tokenizer = getattr(backend, "pre_tokenizer", None)
    if normalizer is None or pre_tokenizer is None:
        return None

    def pretokenize(text: str, offset: int = 0) -> list[Piece]:
        spans = [span for _, span in pre_tokenizer.pre_tokenize_str(text)]
        return [Piece(text[a:b], _piece_kind(text[a:b]), offset + a, offset + b)
                for a, b in spans if b > a]

    return normalizer.normalize_str, pretokenize


def _content_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, truncation=False,
                          verbose=False)["input_ids"])


def align_pieces(prompt: str, tokenizer, use_backend: bool = True) -> list[Piece]:
    """Pre-tokenize ``prompt`` and attach each piece's BPE ids and content-token offset.

    Pieces come from the tokenizer's own normalizer and pre-tokenizer when it is a fast
    (``tokenizers``-backed) one and ``use_backend``; otherwise from the pure-Python replica
    (:func:`normalize_prompt`, :func:`clip_pretokenize`), which agrees with it except on
    characters whose Unicode data differs between Python's and the tokenizer's tables.

    Each piece is tokenized on its own (one batched call); their concatenation is checked
    against the tokenization of the whole prompt, so the returned spans are exact or an error
    is raised. Offsets count content tokens only: content token ``k`` sits at position ``k + 1``
    of ``tokenizer(prompt)["input_ids"]`` (after BOS).
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str, got {type(prompt).__name__}")
    normalize, pretokenize = (_backend_steps(tokenizer) if use_backend else None) or (
        normalize_prompt, clip_pretokenize)
    raw_tokens, normalized_tokens = _added_tokens(tokenizer, normalize)
    pieces = prompt_pieces(prompt, raw_tokens, normalize, pretokenize, normalized_tokens)
    if not pieces:
        return []
    per_piece = tokenizer([p.text for p in pieces], add_special_tokens=False,
                          truncation=False, verbose=False)["input_ids"]
    aligned, cursor = [], 0
    for piece, ids in zip(pieces, per_piece):
        aligned.append(Piece(piece.text, piece.kind, piece.start, piece.end, tuple(ids), cursor))
        cursor += len(ids)
    joined = [i for p in aligned for i in p.tokens]
    if joined != _content_ids(tokenizer, prompt):
        raise RuntimeError(
            f"word-wise CLIP tokenization of {prompt[:80]!r} differs from the full tokenization; "
            "the tokenizer's pre-tokenizer is not CLIP's (unsupported tokenizer)"
        )
    return aligned
