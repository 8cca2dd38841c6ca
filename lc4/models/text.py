"""Text conditioning: SD1.5's CLIP text model (transformers) and the colour-word mask for CMPF."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from transformers import CLIPTextModel

if TYPE_CHECKING:
    from .phrases import PhraseEmbeddings


@dataclass
class TextConditioning:
    """Text encoder last hidden states y_0 (b, 77, d) and the colour-word mask M (b, 77).

    `phrases`: the prompts' colour phrases encoded alone, for a UNet that takes its cross-attention
    values from them (`lc4.models.phrases`); None otherwise.
    """

    embeddings: torch.Tensor
    color_mask: torch.Tensor
    phrases: "PhraseEmbeddings | None" = None

    def select(self, start: int, stop: int) -> "TextConditioning":
        """Prompts `start..stop-1` of the batch, with their phrases."""
        phrases = None if self.phrases is None else self.phrases.select(start, stop)
        return TextConditioning(self.embeddings[start:stop], self.color_mask[start:stop], phrases)

    def repeat_frames(self, num_frames: int) -> torch.Tensor:
        """Per-frame copy of the embeddings for the folded `(b f)` batch."""
        return self.embeddings.repeat_interleave(num_frames, dim=0)


def tokenize(tokenizer, prompts: Sequence[str], with_mask: bool = False):
    """Token ids padded/truncated to the tokenizer's window (77 for CLIP), as SD1.5 does.

    With `with_mask`, returns `(ids, attention_mask)`: a bidirectional encoder must not attend to
    the padding (CLIP is causal, so SD1.5 passes no mask and its padding changes no word's state).
    """
    enc = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    )
    return (enc.input_ids, enc.attention_mask) if with_mask else enc.input_ids


def encode_prompts(text_encoder, tokenizer, prompts: Sequence[str], phrases: bool = False) -> TextConditioning:
    """Last hidden states (SD1.5: CLIP's) and colour-word masks for a batch of prompts.

    `text_encoder` is SD1.5's `CLIPTextModel`, called as SD1.5 does (no attention mask), or a
    referenced bidirectional encoder (`lc4.models.text_reference`), which gets the padding mask.
    `phrases`: also encode each prompt's colour phrases alone (`lc4.models.phrases`).
    """
    from .color_words import color_word_masks
    from .phrases import phrase_embeddings

    device = next(text_encoder.parameters()).device
    if isinstance(text_encoder, CLIPTextModel):
        embeddings = text_encoder(tokenize(tokenizer, prompts).to(device)).last_hidden_state
    else:
        ids, attention = tokenize(tokenizer, prompts, with_mask=True)
        embeddings = text_encoder(input_ids=ids.to(device), attention_mask=attention.to(device)).last_hidden_state
    mask = color_word_masks(list(prompts), tokenizer, max_length=embeddings.shape[1]).to(device)
    found = None
    if phrases:
        found = phrase_embeddings(_phrase_encoder(text_encoder, tokenizer), tokenizer, prompts, embeddings.shape[1])
    return TextConditioning(embeddings=embeddings, color_mask=mask, phrases=found)


# Colour phrases encoded alone, per text encoder: a benchmark or a film repeats a few dozen
# phrases ("red star") over thousands of prompts, and encoding them is most of a training step's
# text cost. Keyed by the encoder's weights (storage and in-place version), so any change to them
# (calibration, loading, .to()) starts a new memo.
_PHRASE_MEMOS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, dict]]" = weakref.WeakKeyDictionary()
PHRASE_MEMO_SIZE = 4096


def _weights_key(module: torch.nn.Module) -> tuple:
    return (module.training, *((p.data_ptr(), p._version, p.dtype) for p in module.parameters()))


def _phrase_encoder(text_encoder, tokenizer):
    """`encode(texts)` → (states, colour masks) of phrases encoded alone, memoised while the encoder
    cannot change its outputs' gradients (frozen, or no grad) and its weights stay the same."""
    def encode_alone(texts):
        alone = encode_prompts(text_encoder, tokenizer, texts)
        return alone.embeddings, alone.color_mask

    frozen = not torch.is_grad_enabled() or not any(p.requires_grad for p in text_encoder.parameters())
    if not frozen:
        return encode_alone
    key = _weights_key(text_encoder)
    cached = _PHRASE_MEMOS.get(text_encoder)
    if cached is None or cached[0] != key or len(cached[1]) > PHRASE_MEMO_SIZE:
        cached = _PHRASE_MEMOS[text_encoder] = (key, {})
    memo = cached[1]

    def encode(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in memo]
        if missing:
            states, masks = encode_alone(missing)
            memo.update(zip(missing, zip(states.detach(), masks)))
        return torch.stack([memo[t][0] for t in texts]), torch.stack([memo[t][1] for t in texts])
    return encode


@torch.no_grad()
def standardize_text_encoder(text_encoder: CLIPTextModel, tokenizer, prompts: Sequence[str],
                             batch_size: int = 256, fp16_exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold per-channel standardisation of the outputs into the final LayerNorm; returns (mean, std).

    For a *frozen random-weight* CLIP (the demo model, trained from nothing): its hidden states
    share a large common part across prompts and the words differ in a few per cent of the
    vector, so a UNet learns to read them slowly. Rewriting the final LayerNorm's affine so the
    states over `prompts` have zero mean and unit variance per channel (pooled over all 77
    positions) keeps the CLIPTextModel format and makes a linear read-out learn 2x faster
    (docs/decisions.md). With `fp16_exact`, every weight is rounded to fp16-representable values,
    so the part can be stored in half precision without changing a single output.
    """
    if not prompts:
        raise ValueError("standardize_text_encoder needs at least one prompt")
    states = torch.cat([encode_prompts(text_encoder, tokenizer, prompts[i:i + batch_size]).embeddings.float()
                        for i in range(0, len(prompts), batch_size)])
    states = states.reshape(-1, states.shape[-1])
    mean, std = states.mean(0), states.std(0).clamp_min(1e-6)
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm  # transformers 4 nests it
    norm.weight.copy_(norm.weight / std)
    norm.bias.copy_((norm.bias - mean) / std)
    if fp16_exact:
        for p in text_encoder.parameters():
            p.copy_(p.half().float())
    return mean, std
