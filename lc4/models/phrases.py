"""Colour phrases encoded alone: cross-attention values that keep each object's own colour.

A contextual text encoder mixes every word of "a red star and a blue circle" with every other, so
the states of "red" and "star" also carry "blue". The UNet's pixels of the star then attend to the
right words but read a blend of both colours (docs/results.md, ninth attempt). After Structured
Diffusion Guidance (Feng et al., ICLR 2023), the cross-attention *keys* still come from the whole
sentence, so each object's pixels find its words, while the *values* of each colour phrase's
tokens ("red star") come from that phrase encoded on its own. Not part of L-C4 (docs/decisions.md).

A colour phrase is a run of colour words (`color_words`: "forest green", "navy-blue") and the
word right after it unless that is a function word ("red coat"); a colour word with no noun after
it ("a star coloured red") is a phrase on its own. A qualifier that is a colour only in context
("plum", "charcoal") starts a phrase when a noun follows it ("plum background"): encoding a phrase
alone that turns out not to be a colour ("plum tree") only gives it its own meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .color_words import ColorVocabulary, color_piece_flags, resolve_vocabulary
from .tokenizer import align_pieces

__all__ = ["ColourPhrase", "colour_phrases", "PhraseEmbeddings", "phrase_embeddings", "phrase_values"]

# words that end a colour phrase instead of being its noun
FUNCTION_WORDS = frozenset("""
a an the and or but nor of on in at to by for from with without into onto over under above below
behind near past beside between through across against along around among is are was were be
being been has have had it its this that these those there here while as than then
""".split())


@dataclass(frozen=True)
class ColourPhrase:
    """A colour phrase of a prompt: its text and where its tokens sit in the prompt.

    Tokenized alone, `text` has the same tokens at positions 1..len(positions) (after BOS).
    """

    text: str
    positions: tuple[int, ...]  # in the prompt's token sequence (BOS = 0)


def colour_phrases(prompt: str, tokenizer, max_length: int,
                   vocabulary: ColorVocabulary | None = None) -> list[ColourPhrase]:
    """The colour phrases of `prompt` whose tokens lie within the first `max_length` positions."""
    vocab = resolve_vocabulary(vocabulary)
    pieces = align_pieces(prompt, tokenizer)
    flags = color_piece_flags(pieces, vocab)

    def is_noun(k: int) -> bool:
        return k < len(pieces) and pieces[k].kind == "letters" and pieces[k].text not in FUNCTION_WORDS

    phrases, i = [], 0
    while i < len(pieces):
        qualified_noun = pieces[i].text in vocab.modifiers and is_noun(i + 1) and not flags[i + 1]
        if not flags[i] and not qualified_noun:
            i += 1
            continue
        end = i
        while end + 1 < len(pieces) and flags[end + 1]:
            end += 1
        if is_noun(end + 1):
            end += 1
        span = pieces[i : end + 1]
        positions = tuple(s.token_start + 1 + k for s in span for k in range(len(s.tokens)))
        i = end + 1
        if positions[-1] >= max_length - 1:  # cut by truncation (the last position is EOS)
            continue
        text = " ".join(s.text for s in span)
        alone = align_pieces(text, tokenizer)
        if [t for p in alone for t in p.tokens] != [t for s in span for t in s.tokens]:
            continue  # the phrase tokenizes differently on its own: keep the sentence's states
        phrases.append(ColourPhrase(text, positions))
    return phrases


@dataclass
class PhraseEmbeddings:
    """The colour phrases of a batch of prompts, encoded alone, and where their states go.

    `embeddings` / `color_mask` `(p, L, d)` / `(p, L)`: the p phrase texts through the text encoder;
    token k of the batch's substitutions moves state `(phrase[k], source[k])` to `(prompt[k], target[k])`.
    """

    embeddings: torch.Tensor
    color_mask: torch.Tensor
    owner: torch.Tensor  # (p,) prompt index of each phrase
    prompt: torch.Tensor  # (m,) the substitutions: prompt index,
    target: torch.Tensor  # position in that prompt,
    phrase: torch.Tensor  # phrase index,
    source: torch.Tensor  # position in the phrase

    def select(self, start: int, stop: int) -> "PhraseEmbeddings":
        """The phrases of prompts `start..stop-1`, renumbered from 0."""
        keep = (self.owner >= start) & (self.owner < stop)
        renumber = torch.cumsum(keep, 0) - 1
        subs = keep[self.phrase]
        return PhraseEmbeddings(self.embeddings[keep], self.color_mask[keep], self.owner[keep] - start,
                                self.prompt[subs] - start, self.target[subs], renumber[self.phrase[subs]],
                                self.source[subs])


def phrase_embeddings(encode, tokenizer, prompts: Sequence[str], max_length: int) -> PhraseEmbeddings:
    """Find every prompt's colour phrases and encode them alone with `encode(texts)` → (emb, mask)."""
    owner, texts, subs = [], [], []
    for i, prompt in enumerate(prompts):
        for phrase in colour_phrases(prompt, tokenizer, max_length) if prompt else ():
            subs.extend((i, t, len(texts), s) for s, t in enumerate(phrase.positions, start=1))
            owner.append(i)
            texts.append(phrase.text)
    embeddings, color_mask = encode(texts) if texts else (None, None)
    cols = torch.tensor(subs, dtype=torch.long).reshape(-1, 4).T
    if embeddings is None:
        embeddings, color_mask = torch.zeros(0, max_length, 0), torch.zeros(0, max_length, dtype=torch.bool)
    return PhraseEmbeddings(embeddings, color_mask, torch.tensor(owner, dtype=torch.long), *cols)


def phrase_values(keys: torch.Tensor, phrases: PhraseEmbeddings, fused_phrases: torch.Tensor) -> torch.Tensor:
    """The value states: `keys` `(b, L, d)` with each phrase token's state from `fused_phrases` `(p, L, d)`."""
    values = keys.clone()
    if phrases.prompt.numel():
        dev = keys.device
        values[phrases.prompt.to(dev), phrases.target.to(dev)] = \
            fused_phrases[phrases.phrase.to(dev), phrases.source.to(dev)].to(values.dtype)
    return values
