"""Text conditioning: SD1.5's CLIP text model (transformers) and the colour-word mask for CMPF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import CLIPTextModel


@dataclass
class TextConditioning:
    """CLIP last hidden states y_0 (b, 77, d) and the colour-word mask M (b, 77)."""

    embeddings: torch.Tensor
    color_mask: torch.Tensor

    def repeat_frames(self, num_frames: int) -> torch.Tensor:
        """Per-frame copy of the embeddings for the folded `(b f)` batch."""
        return self.embeddings.repeat_interleave(num_frames, dim=0)


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids padded/truncated to the tokenizer's window (77 for CLIP), as SD1.5 does."""
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids


def encode_prompts(text_encoder: CLIPTextModel, tokenizer, prompts: Sequence[str]) -> TextConditioning:
    """CLIP last hidden states (SD1.5 conditioning) and colour-word masks for a batch of prompts."""
    from .color_words import color_word_masks

    device = next(text_encoder.parameters()).device
    ids = tokenize(tokenizer, prompts).to(device)
    embeddings = text_encoder(ids).last_hidden_state
    mask = color_word_masks(list(prompts), tokenizer, max_length=ids.shape[1]).to(device)
    return TextConditioning(embeddings=embeddings, color_mask=mask)
