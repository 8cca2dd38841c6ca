"""Cross-attention grounding: which of the sentence's words each shape's pixels attend to.

A colorizer paints a shape the colour of the words its pixels attend to in the UNet's
cross-attention (attn2). `recorded_cross_attention` records those attention maps;
`grounding_loss` is an auxiliary training objective, used where instance masks are known (the
procedural benchmark): for the pixels of shape i, the share of the attention on the shapes'
words that goes to shape i's own words ("red", "star") rather than to the other shapes' words.
It is not part of L-C4 (the paper trains on ε-loss alone) and the demo model does not use it
(docs/decisions.md, docs/results.md); `benchmarks/cross_attention_probe.py` measures the same share.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from ..models.tokenizer import align_pieces

__all__ = ["recorded_cross_attention", "word_token_positions", "instance_token_indicator", "grounding_loss",
           "own_word_share"]


def word_token_positions(caption: str, tokenizer, words: Sequence[str]) -> list[int]:
    """Token positions (BOS = 0) of `words` in `caption`, each at its first occurrence."""
    pieces = align_pieces(caption, tokenizer)
    positions: list[int] = []
    for word in words:
        piece = next((p for p in pieces if p.text == word.lower()), None)
        if piece is None:
            raise ValueError(f"word {word!r} is not in the caption {caption!r}")
        positions.extend(piece.token_start + 1 + k for k in range(len(piece.tokens)))
    return positions


def instance_token_indicator(captions: Sequence[str], instance_words: Sequence[str], tokenizer,
                             num_instances: int, length: int) -> torch.Tensor:
    """`(b, num_instances, length)` 0/1: the tokens of each instance's words in each caption.

    `instance_words[j]` lists clip j's instances as "colour noun;colour noun" (the dataset's
    format); a dropped caption ("") or a padded instance slot gets an all-zero row.
    """
    out = torch.zeros(len(captions), num_instances, length)
    for j, (caption, words) in enumerate(zip(captions, instance_words)):
        if not caption:
            continue
        for i, phrase in enumerate(w for w in words.split(";") if w):
            pos = [p for p in word_token_positions(caption, tokenizer, phrase.split()) if p < length]
            out[j, i, pos] = 1.0
    return out


@contextmanager
def recorded_cross_attention(unet: torch.nn.Module, detach: bool = True) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Records every attn2's attention `(batch, heads, pixels, tokens)` while the block is active.

    The maps are recomputed from the layer's own projections (the layer's output is untouched,
    whatever attention backend runs it); `detach=False` keeps them in the graph for a loss.
    """
    maps: dict[str, list[torch.Tensor]] = defaultdict(list)

    def hook(module, args, kwargs, output, name):
        x = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        if context is None or x.ndim != 3:
            return
        q = rearrange(module.to_q(x), "b n (h d) -> b h n d", h=module.heads)
        k = rearrange(module.to_k(context), "b n (h d) -> b h n d", h=module.heads)
        probs = (q @ k.transpose(-1, -2) * module.scale).softmax(-1)
        maps[name].append(probs.detach() if detach else probs)

    handles = [m.register_forward_hook(lambda mod, a, kw, out, name=n: hook(mod, a, kw, out, name), with_kwargs=True)
               for n, m in unet.named_modules() if n.endswith("attn2")]
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def own_word_share(attention: torch.Tensor, masks: torch.Tensor, indicator: torch.Tensor,
                   eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention mass of each shape's pixels on its own and on the other shapes' words.

    `attention` `(n, heads, pixels, tokens)` of n frames, `masks` `(n, instances, H, W)` in [0, 1]
    (pooled here to the layer's square grid), `indicator` `(n, instances, tokens)`. Returns `own`
    and `other` `(n, heads, instances)` (mask-weighted means over the shape's pixels) and a
    `(n, instances)` bool of the (frame, shape) pairs that count: visible and with words.
    """
    side = int(round(attention.shape[2] ** 0.5))
    if side * side != attention.shape[2]:
        raise ValueError(f"attention over {attention.shape[2]} pixels is not a square grid")
    w = rearrange(F.adaptive_avg_pool2d(masks.to(attention.dtype), side), "n i h w -> n i (h w)")
    area = w.sum(-1)
    per_token = torch.einsum("nip,nhpt->nhit", w / area.clamp_min(eps)[..., None], attention)
    ind = indicator.to(attention.dtype)
    own = (per_token * ind[:, None]).sum(-1)
    others = (ind.sum(1, keepdim=True) - ind).clamp(0, 1)
    other = (per_token * others[:, None]).sum(-1)
    valid = (area > 0.5) & (ind.sum(-1) > 0) & (others.sum(-1) > 0)
    return own, other, valid


def grounding_loss(maps: dict[str, list[torch.Tensor]], masks: torch.Tensor, indicator: torch.Tensor,
                   eps: float = 1e-4) -> torch.Tensor:
    """Mean over layers, heads and counted (frame, shape) pairs of −log(own / (own + other)).

    Zero when no pair counts (one-shape clips, dropped captions). Only the split between the
    shapes' words is asked for, not how much attention they get in all.
    """
    terms = []
    for calls in maps.values():
        for attention in calls:
            own, other, valid = own_word_share(attention, masks, indicator)
            if valid.any():
                share = (own + eps) / (own + other + 2 * eps)
                terms.append(-torch.log(share).mean(1)[valid])
    if not terms:
        return masks.new_zeros(())
    return torch.cat(terms).mean()
