"""The luminance encoder E^lum and its skip connections into the VAE decoder (L-C4 §3.1).

E^lum is a diffusers VAE `Encoder` (same topology as the SD encoder E) that reads the grey frame
replicated to 3 channels. It yields three things:

* `moments` — its latent-level output (2·latent channels), which the UNet's zero-initialised
  injection conv adds to the noised latent;
* `latent_features` — the mid-block features at latent resolution, CMPF's visual prompt;
* `skips` — one feature map per decoder scale, each through a zero-initialised 1×1 conv to the
  decoder's width there, added to the input of the matching decoder up-block by a forward pre-hook
  (`inject_decoder_skips`), so the SD decoder itself is untouched.

Scale matching: decoder up-block j runs at 1/2^(n-1-j) of the image; it receives the mid-block
output for j = 0 and the output of encoder down-block n-1-j otherwise (before its downsampler).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn

from .attention import zero_module


@dataclass
class LuminanceFeatures:
    """What E^lum gives the rest of the model for a batch of `(b f)` grey frames."""

    moments: torch.Tensor
    latent_features: torch.Tensor
    skips: list[torch.Tensor]

    def select(self, index: torch.Tensor | slice) -> "LuminanceFeatures":
        """The features of a subset of frames (for chunked decoding or clip gathering)."""
        return LuminanceFeatures(self.moments[index], self.latent_features[index], [s[index] for s in self.skips])


class LuminanceEncoder(ModelMixin, ConfigMixin):
    """E^lum plus the decoder skip convolutions (trained together in stage 0)."""

    @register_to_config
    def __init__(
        self,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        down_block_types: Sequence[str] = ("DownEncoderBlock2D",) * 4,
        layers_per_block: int = 2,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        decoder_block_out_channels: Sequence[int] | None = None,
    ):
        super().__init__()
        self.encoder = Encoder(
            in_channels=3,
            out_channels=latent_channels,
            down_block_types=tuple(down_block_types),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            double_z=True,
        )
        enc = list(block_out_channels)
        dec = list(decoder_block_out_channels or block_out_channels)
        if len(dec) != len(enc):
            raise ValueError(f"decoder has {len(dec)} scales but the luminance encoder has {len(enc)}")
        n = len(enc)
        # channels at the input of decoder up-block j, and of the encoder feature at that scale
        dec_in = [dec[-1]] + [list(reversed(dec))[j - 1] for j in range(1, n)]
        enc_at = [enc[-1]] + [enc[n - 1 - j] for j in range(1, n)]
        self.skip_convs = nn.ModuleList(zero_module(nn.Conv2d(c_in, c_out, 1)) for c_in, c_out in zip(enc_at, dec_in))
        # the mid-block's attention leaves a channels-last tensor; torch's CPU GroupNorm backward
        # crashes on one that needs no gradient itself (latent head trained, body frozen), so the
        # latent head gets a contiguous copy (small: the coarsest scale)
        self.encoder.conv_norm_out.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(),))
        self._taps: list[nn.Module] = [self.encoder.mid_block] + [
            self.encoder.down_blocks[n - 1 - j].resnets[-1] for j in range(1, n)
        ]

    @classmethod
    def from_vae(cls, vae: AutoencoderKL) -> "LuminanceEncoder":
        """E^lum with E's topology and weights (the spec's stand-in for L-CAD's weights)."""
        cfg = vae.config
        model = cls(
            block_out_channels=cfg.block_out_channels,
            down_block_types=cfg.down_block_types,
            layers_per_block=cfg.layers_per_block,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.norm_num_groups,
            act_fn=cfg.act_fn,
            decoder_block_out_channels=cfg.block_out_channels,
        )
        model.encoder.load_state_dict(vae.encoder.state_dict())
        return model if model.dtype == vae.dtype else model.to(dtype=vae.dtype)

    def forward(self, grey: torch.Tensor) -> LuminanceFeatures:
        """Encode `(b f) 3 h w` grey frames in [-1, 1] (or `(b f) 1 h w`, replicated)."""
        if grey.shape[1] == 1:
            grey = grey.expand(-1, 3, -1, -1)
        taps: list[torch.Tensor] = [None] * len(self._taps)  # type: ignore[list-item]
        handles = [
            tap.register_forward_hook(lambda _m, _a, out, i=i: taps.__setitem__(i, out))
            for i, tap in enumerate(self._taps)
        ]
        try:
            moments = self.encoder(grey)
        finally:
            for h in handles:
                h.remove()
        skips = [conv(feat) for conv, feat in zip(self.skip_convs, taps)]
        return LuminanceFeatures(moments=moments, latent_features=taps[0], skips=skips)


@contextlib.contextmanager
def inject_decoder_skips(decoder: Decoder, skips: Sequence[torch.Tensor]) -> Iterator[None]:
    """While active, decoder up-block j gets `skips[j]` added to its input (same batch, same size)."""
    if len(skips) != len(decoder.up_blocks):
        raise ValueError(f"{len(skips)} skip features for a decoder with {len(decoder.up_blocks)} scales")

    def add(skip: torch.Tensor):
        def hook(_module, args):
            sample = args[0]
            if sample.shape[0] != skip.shape[0] or sample.shape[-2:] != skip.shape[-2:]:
                raise ValueError(
                    f"decoder features {tuple(sample.shape)} do not match luminance skip {tuple(skip.shape)}: "
                    "frame sizes must be multiples of the VAE's downsampling factor, and decode batches must match"
                )
            return (sample + skip.to(sample.dtype),) + tuple(args[1:])

        return hook

    handles = [block.register_forward_pre_hook(add(s)) for block, s in zip(decoder.up_blocks, skips)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
