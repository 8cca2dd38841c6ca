"""Cross-Modality Pre-Fusion (L-C4 §3.3, eqs. 4–7): instance-aware text embeddings.

The visual prompt ŷ^lum is E^lum's latent-level features of the clip, compressed by TDA's
deformable sampler and projected to the text width. Each of the L fusion blocks is post-norm:

    ȳ = LN(MSA(y) + y)                      (4)
    ỹ = LN(MCA(ȳ, ŷ^lum, M) + ȳ)            (5)  colour-word rows get no visual update
    y = LN(FFN(ỹ) + ỹ)                      (6)

and the output is y^tex = W_e(y_L) + y_0 with W_e zero-initialised (7), so an untrained CMPF is
exactly plain CLIP.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from .attention import MultiHeadAttention, zero_module
from .tda import DeformableSampler


class FeedForward(nn.Sequential):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))


class FusionBlock(nn.Module):
    """One CMPF block: MSA → masked cross-attention to the visual prompt → FFN, each post-norm."""

    def __init__(self, dim: int, heads: int, ff_mult: int = 4):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, text: torch.Tensor, visual: torch.Tensor, color_mask: torch.Tensor | None) -> torch.Tensor:
        text = self.norm1(self.self_attn(text) + text)
        update = self.cross_attn(text, visual)
        if color_mask is not None:
            update = update.masked_fill(color_mask[..., None], 0.0)
        text = self.norm2(update + text)
        return self.norm3(self.ff(text) + text)


class CrossModalityPreFusion(ModelMixin, ConfigMixin):
    """CMPF: CLIP embeddings + a clip's luminance features → instance-aware text embeddings."""

    @register_to_config
    def __init__(
        self,
        text_dim: int = 768,
        lum_channels: int = 512,
        num_blocks: int = 2,
        heads: int = 8,
        ff_mult: int = 4,
        spatial_stride: int = 2,
        temporal_stride: int = 2,
        alpha: float = 4.0,
        use_color_mask: bool = True,
    ):
        super().__init__()
        self.lum_norm = nn.GroupNorm(min(32, lum_channels), lum_channels)
        self.compress = DeformableSampler(lum_channels, spatial_stride, temporal_stride, alpha)
        self.visual_in = nn.Linear(lum_channels, text_dim)
        self.blocks = nn.ModuleList(FusionBlock(text_dim, heads, ff_mult) for _ in range(num_blocks))
        self.out = zero_module(nn.Linear(text_dim, text_dim))  # W_e

    def visual_prompt(self, latent_features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """ŷ^lum: `(b f) c h w` E^lum features → `(b, tokens, text_dim)` compressed by deformable sampling."""
        # E^lum's features arrive channels-last; GroupNorm's CPU backward on those segfaults (torch 2.13)
        clip = rearrange(self.lum_norm(latent_features.contiguous()), "(b f) c h w -> b c f h w", f=num_frames)
        sampled = rearrange(self.compress(clip), "b c f h w -> b (f h w) c")
        return self.visual_in(sampled)

    def forward(
        self,
        text_embeddings: torch.Tensor,
        visual_prompt: torch.Tensor,
        color_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """y^tex for `(b, tokens, d)` CLIP states; `color_mask` (b, tokens) marks colour-word tokens."""
        if visual_prompt.shape[0] != text_embeddings.shape[0]:
            raise ValueError(f"{visual_prompt.shape[0]} visual prompts for {text_embeddings.shape[0]} texts")
        mask = color_mask.to(torch.bool) if (self.config.use_color_mask and color_mask is not None) else None
        y = text_embeddings
        for block in self.blocks:
            y = block(y, visual_prompt, mask)
        return self.out(y) + text_embeddings
