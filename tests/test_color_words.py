"""Colour-word mask of CMPF and the offline CLIP tokenizer (lc4.models.color_words / tokenizer)."""

from __future__ import annotations

import importlib.util
import random
import sys
import types

import pytest
import regex
import torch

from lc4.models import tokenizer as tokmod
from lc4.models.color_words import (
    color_piece_flags,
    color_word_mask,
    color_word_masks,
    load_color_vocabulary,
    masked_words,
    parse_color_vocabulary,
)
from lc4.models.tokenizer import (
    align_pieces,
    clip_pretokenize,
    find_open_clip_bpe,
    load_clip_tokenizer,
    normalize_prompt,
    read_clip_bpe,
)

L = 77


@pytest.fixture(scope="module")
def tok():
    return load_clip_tokenizer()


@pytest.fixture(scope="module")
def vocab():
    return load_color_vocabulary()


@pytest.fixture(scope="module")
def openai_clip():
    """OpenAI's SimpleTokenizer as shipped in open_clip, loaded from its file alone.

    Importing the open_clip package needs torchvision, so only ``open_clip/tokenizer.py`` is
    executed, with an identity stand-in for ftfy (absent here; it only repairs mojibake).
    """
    bpe = find_open_clip_bpe()
    if bpe is None:
        pytest.skip("open_clip_torch is not installed")
    saved = sys.modules.get("ftfy")
    sys.modules["ftfy"] = types.SimpleNamespace(fix_text=lambda text: text)
    try:
        spec = importlib.util.spec_from_file_location("_openai_clip_tokenizer",
                                                      bpe.parent / "tokenizer.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.SimpleTokenizer(str(bpe))
    finally:
        if saved is None:
            sys.modules.pop("ftfy", None)
        else:
            sys.modules["ftfy"] = saved


# prompt → words whose tokens are masked (in order)
TABLE: list[tuple[str, list[str]]] = [
    ("a red car", ["red"]),
    ("Red", ["red"]),
    ("A RED CAR", ["red"]),
    ("red, white, and blue.", ["red", "white", "blue"]),
    ("a  Light \t BLUE\nshirt", ["light", "blue"]),
    ("a navy-blue coat", ["navy", "blue"]),
    ("blue-green water", ["blue", "green"]),
    ("a light blue shirt", ["light", "blue"]),
    ("the light is on", []),
    ("light, blue", ["blue"]),
    ("a dark-red wall", ["dark", "red"]),
    ("a dark room", []),
    ("a very dark navy blue jacket", ["dark", "navy", "blue"]),
    ("a reddish sky", ["reddish"]),
    ("a bluish, greenish glow", ["bluish", "greenish"]),
    ("a tealish wall", ["tealish"]),
    ("finish the radish", []),
    ("redwood trees", []),
    ("a goldfish in a bowl", []),
    ("a blackboard, a whiteboard and a greenhouse", []),
    ("an orange on a table", ["orange"]),  # known limitation: the fruit is masked too
    ("a turquoise necklace", ["turquoise"]),
    ("chartreuse and vermilion flags", ["chartreuse", "vermilion"]),
    ("sky blue walls", ["sky", "blue"]),
    ("the sky is clear", []),
    ("a hot pink dress", ["hot", "pink"]),
    ("a hot day", []),
    ("an off white sofa", ["off", "white"]),
    ("an off-white sofa", ["off", "white"]),
    ("a pale sky blue dress", ["pale", "sky", "blue"]),
    ("a black-and-white photo", ["black", "and", "white"]),
    ("black and white cat", ["black", "white"]),
    ("salt-and-pepper hair", ["salt", "and", "pepper"]),
    ("cherry red lipstick and a cherry pie", ["cherry", "red"]),
    ("an emerald-green lake", ["emerald", "green"]),
    ("an emerald ring", []),
    ("a rust-colored door", ["rust", "colored"]),
    ("a crimson-tinged cloud", ["crimson", "tinged"]),
    ("a red-haired girl", ["red"]),
    ("a blue light", ["blue"]),
    ("a colorful parrot", ["colorful"]),
    ("a monochrome film", ["monochrome"]),
    ("bright colours everywhere", ["bright", "colours"]),
    ("a bright sunny day", []),
    ("2 red cars and 3 blue bikes", ["red", "blue"]),
    ("a red5 car", ["red"]),  # CLIP splits letters from digits
    ("the car's red paint", ["red"]),
    ("a woman in a golden dress", ["golden"]),
    ("a silver-grey cat", ["silver", "grey"]),
    ("Café au lait walls", ["café", "au", "lait"]),
    ("", []),
]
PROMPTS = [p for p, _ in TABLE]


def _letter_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in regex.finditer(r"\p{L}+", text)]


def _expected_mask_by_offsets(prompt: str, words: list[str], tok) -> torch.Tensor:
    """Reference mask from the tokenizer's character offsets, independent of align_pieces."""
    lowered = prompt.lower()
    spans = _letter_spans(lowered)
    chosen, cursor = [], 0
    for word in words:  # the expected words, matched in order against letter runs
        while lowered[spans[cursor][0] : spans[cursor][1]] != word:
            cursor += 1
        chosen.append(spans[cursor])
        cursor += 1
    marked = set()
    for a, b in chosen:
        marked.update(range(a, b))
    for (a1, b1), (a2, b2) in zip(chosen, chosen[1:]):  # hyphens inside a colour compound
        if a2 == b1 + 1 and lowered[b1] == "-":
            marked.add(b1)
    enc = tok(prompt, padding="max_length", max_length=L, truncation=True,
              return_offsets_mapping=True)
    special = set(tok.all_special_ids)
    return torch.tensor([
        tid not in special and any(c in marked for c in range(a, b))
        for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])
    ])


# ------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------


def test_offline_tokenizer_equals_openai_reference(tok, openai_clip):
    extra = ["Hello, World!!", "it's 2024; a 3d model.", "naïve café — déjà vu", "漢字 🎨 ok",
             "don't STOP", "a" * 40]
    for prompt in PROMPTS + extra:
        ref = [openai_clip.sot_token_id, *openai_clip.encode(prompt), openai_clip.eot_token_id]
        assert tok(prompt)["input_ids"] == ref, prompt
    assert (tok.bos_token_id, tok.eos_token_id) == (openai_clip.sot_token_id,
                                                     openai_clip.eot_token_id)
    assert len(tok) == openai_clip.vocab_size
    vocab, _ = read_clip_bpe(str(find_open_clip_bpe()))
    ordinary = list(vocab)[:-2]  # the two special tokens are named differently in open_clip
    assert [vocab[t] for t in ordinary] == [openai_clip.encoder[t] for t in ordinary]
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert tok.model_max_length == L


def test_padding_and_truncation_follow_sd15(tok):
    ids = tok("word " * 200, padding="max_length", max_length=L, truncation=True)["input_ids"]
    assert len(ids) == L and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    short = tok("a red car", padding="max_length", max_length=L)["input_ids"]
    assert short[5:] == [tok.eos_token_id] * (L - 5)


def test_bytes_to_unicode_is_a_printable_bijection():
    table = tokmod.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    chars = list(table.values())
    assert len(set(chars)) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in chars)
    assert all(table[b] == chr(b) for b in range(ord("!"), ord("~") + 1))


def test_saved_tokenizer_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tokenizer")
    for path in (tmp_path / "tokenizer", tmp_path):  # the folder, or an SD1.5 checkout root
        loaded = load_clip_tokenizer(str(path))
        for prompt in PROMPTS:
            assert loaded(prompt)["input_ids"] == tok(prompt)["input_ids"]
        assert loaded.pad_token_id == tok.pad_token_id
        assert loaded.model_max_length == L


def test_file_based_construction_and_bpe_path_give_same_ids(tok):
    bpe = find_open_clip_bpe()
    if bpe is None:
        pytest.skip("open_clip_torch is not installed")
    from_files = tokmod._construct_from_files(*read_clip_bpe(str(bpe)), 20)
    from_gz = load_clip_tokenizer(bpe, max_length=20)
    for loaded in (from_files, from_gz):
        assert loaded.model_max_length == 20
        assert loaded.pad_token == "<|endoftext|>"
        for prompt in PROMPTS:
            assert loaded(prompt)["input_ids"] == tok(prompt)["input_ids"]


def test_tokenizer_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_clip_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_clip_tokenizer(tmp_path)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "vocab.json").write_text('{"a</w>": 0}', encoding="utf-8")
    (tmp_path / "tiny" / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no CLIP vocabulary"):
        load_clip_tokenizer(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError, match="hub id"):  # offline (conftest), no such repo
        load_clip_tokenizer("lc4-tests/no-such-tokenizer")
    with pytest.raises(FileNotFoundError, match="BPE file not found"):
        load_clip_tokenizer(tmp_path / "vocab.txt.gz")
    with pytest.raises(ValueError, match="max_length"):
        load_clip_tokenizer(max_length=1)
    monkeypatch.setattr(tokmod.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="open_clip_torch"):
        load_clip_tokenizer()


# ------------------------------------------------------------------------------------------
# Pre-tokenization and alignment
# ------------------------------------------------------------------------------------------

_CLIP_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
_ALPHABET = [*"abcXYZ  '-,.!?0123456789\t\n", "'s", "'LL", "'re", "<|endoftext|>",
             "<|ENDOFTEXT|>", "<|startoftext|>", "é", "e\u0301", "ß", "Σ", "½", "漢字", "🎨",
             "\xa0", "\u3000", "ﬁ", "Å", "&amp;", "_", "red", "navy-blue"]


def _random_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 30))) for _ in range(n)]


def _reference_pieces(normalized: str) -> list[str]:
    """CLIP's regex, with special-token matches re-split the way byte-level BPE does."""
    out = []
    for piece in _CLIP_PATTERN.findall(normalized):
        out += ["<|", piece[2:-2], "|>"] if piece in ("<|startoftext|>", "<|endoftext|>") else [piece]
    return out


def test_pretokenizer_matches_clip_regex():
    for prompt in PROMPTS + _random_prompts(400, seed=1):
        normalized = normalize_prompt(prompt)
        assert [p.text for p in clip_pretokenize(normalized)] == _reference_pieces(normalized)


@pytest.mark.parametrize("use_backend", [True, False])
def test_piecewise_ids_equal_full_ids(tok, use_backend):
    for prompt in PROMPTS + _random_prompts(300, seed=2):
        pieces = align_pieces(prompt, tok, use_backend=use_backend)
        joined = [i for p in pieces for i in p.tokens]
        assert joined == tok(prompt, add_special_tokens=False)["input_ids"], prompt
        assert all(p.token_start == q.token_end for p, q in zip(pieces[1:], pieces))


def test_backend_and_python_pretokenizers_agree(tok):
    for prompt in PROMPTS + _random_prompts(200, seed=3):
        a = align_pieces(prompt, tok, use_backend=True)
        b = align_pieces(prompt, tok, use_backend=False)
        assert [(p.text, p.kind, p.tokens) for p in a] == [(p.text, p.kind, p.tokens) for p in b]


def test_added_tokens_are_single_pieces():
    tok = load_clip_tokenizer()  # a private copy: add_tokens mutates it
    tok.add_tokens(["<sks>", "Zorp"])  # textual-inversion style words (matched normalized)
    for prompt in ["a <sks> red car", "a <SKS> red car", "a ZORP-blue car", "light<sks>blue",
                   "x <|endoftext|> red"]:
        for use_backend in (True, False):
            pieces = align_pieces(prompt, tok, use_backend=use_backend)
            assert [i for p in pieces for i in p.tokens] == tok(
                prompt, add_special_tokens=False)["input_ids"]
        specials = [p for p in pieces if p.kind == "special"]
        assert len(specials) == 1 and len(specials[0].tokens) == 1
    assert masked_words("light<sks>blue", tok) == ["blue"]  # the added word breaks the phrase
    assert masked_words("a ZORP-blue car", tok) == ["blue"]


# ------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt,expected", TABLE)
def test_masked_words_table(tok, prompt, expected):
    assert masked_words(prompt, tok) == expected


def test_table_is_large_and_mixed():
    assert len(TABLE) >= 30
    assert sum(not words for _, words in TABLE) >= 10


@pytest.mark.parametrize("prompt,expected", TABLE)
def test_mask_matches_offset_reference(tok, prompt, expected):
    mask = color_word_mask(prompt, tok)
    assert mask.dtype == torch.bool and mask.shape == (L,)
    assert torch.equal(mask, _expected_mask_by_offsets(prompt, expected, tok))


def test_bos_eos_and_padding_never_masked(tok):
    for prompt in PROMPTS + ["red " * 100]:
        ids = tok(prompt, padding="max_length", max_length=L, truncation=True)["input_ids"]
        mask = color_word_mask(prompt, tok)
        special = torch.tensor([i in tok.all_special_ids for i in ids])
        assert not (mask & special).any(), prompt
    full = color_word_mask("red " * 100, tok)
    assert full[1 : L - 1].all() and not full[0] and not full[L - 1]


def test_multi_token_colour_words_fully_masked(tok):
    for word in ("chartreuse", "vermilion", "aquamarine", "periwinkle"):
        n_tokens = len(tok(word, add_special_tokens=False)["input_ids"])
        assert n_tokens > 1, word  # the point of this test
        mask = color_word_mask(f"a {word} kite", tok)
        assert mask[2 : 2 + n_tokens].all() and int(mask.sum()) == n_tokens


def test_word_straddling_and_beyond_the_window(tok):
    word = "chartreuse"
    n_tokens = len(tok(word, add_special_tokens=False)["input_ids"])
    fill = L - 2 - 1  # one content slot left for the colour word
    prompt = "a " * fill + word + " kite"
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) == fill + n_tokens + 1
    mask = color_word_mask(prompt, tok)
    assert mask.nonzero().flatten().tolist() == [L - 2]
    assert masked_words(prompt, tok) == [word]

    beyond = "a " * (L - 2) + "red kite"
    assert not color_word_mask(beyond, tok).any()
    assert masked_words(beyond, tok) == []
    # smaller windows: only in-window positions, never the EOS slot
    short = color_word_mask("a b red car", tok, max_length=5)
    assert short.tolist() == [False, False, False, True, False]
    assert not color_word_mask("a b c red car", tok, max_length=5).any()


def test_every_colour_entry_is_masked_whole(tok, vocab):
    colour_sections = ("basic", "names", "derived", "colorish")
    for word in (w for s in colour_sections for w in vocab.sections[s]):
        n_tokens = len(tok(word, add_special_tokens=False)["input_ids"])
        mask = color_word_mask(f"the {word} thing", tok)
        assert masked_words(f"the {word} thing", tok) == [word]
        assert mask[2 : 2 + n_tokens].all() and int(mask.sum()) == n_tokens, word


def test_modifiers_only_before_colours(tok, vocab):
    for word in vocab.sections["modifiers"] + vocab.sections["qualifiers"]:
        assert masked_words(f"the {word} is here", tok) == [], word
        assert masked_words(f"a {word} red car", tok) == [word, "red"], word
        assert masked_words(f"a {word}-blue car", tok) == [word, "blue"], word


def test_phrases_spaced_and_hyphenated(tok, vocab):
    for phrase in vocab.phrases:
        words = list(phrase)
        assert masked_words(f"a {' '.join(words)} coat", tok) == words
        assert masked_words(f"a {'-'.join(words)} coat", tok) == words
        assert masked_words(f"a {', '.join(words)} coat", tok) == [w for w in words
                                                                    if vocab.is_color(w)]


def test_batched_masks(tok):
    masks = color_word_masks(PROMPTS, tok)
    assert masks.shape == (len(PROMPTS), L) and masks.dtype == torch.bool
    for row, prompt in zip(masks, PROMPTS):
        assert torch.equal(row, color_word_mask(prompt, tok))
    assert color_word_masks([], tok).shape == (0, L)
    with pytest.raises(ValueError, match="single str"):
        color_word_masks("a red car", tok)
    with pytest.raises(ValueError, match="max_length"):
        color_word_mask("a red car", tok, max_length=1)
    with pytest.raises(ValueError, match="must be a str"):
        color_word_mask(["a red car"], tok)


# ------------------------------------------------------------------------------------------
# Vocabulary file
# ------------------------------------------------------------------------------------------


def test_vocabulary_entries_are_single_clip_words(vocab):
    entries = [w for name, ws in vocab.sections.items() if name != "phrases" for w in ws]
    entries += [w for phrase in vocab.phrases for w in phrase]
    for word in entries:
        pieces = clip_pretokenize(normalize_prompt(word))
        assert [(p.text, p.kind) for p in pieces] == [(word, "letters")], word
    assert {"red", "grey", "gray", "navy", "teal", "olive", "golden"} <= vocab.colors
    assert {"light", "dark", "pale"} <= vocab.modifiers
    assert not vocab.colors & vocab.modifiers


def test_custom_vocabulary(tok):
    custom = parse_color_vocabulary("[names]\nzorp  # a made-up colour\n[modifiers]\nvery\n")
    assert masked_words("a very zorp car, very red", tok, vocabulary=custom) == ["very", "zorp"]
    pieces = align_pieces("very zorp", tok)
    assert color_piece_flags(pieces, custom) == [True, True]


@pytest.mark.parametrize("text,match", [
    ("[colours]\nred\n", "unknown section"),
    ("red\n", "before any"),
    ("[names]\nred\n[basic]\nred\n", "listed twice"),
    ("[names]\nnavy blue\n", "one word"),
    ("[names]\nred5\n", "one word"),
    ("[phrases]\nblue\n", "two or more"),
])
def test_vocabulary_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_color_vocabulary(text, source="v.txt")


def test_vocabulary_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_color_vocabulary(tmp_path / "none.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("[basic]\nred\n[basic]\nred\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:4"):
        load_color_vocabulary(bad)
