"""The SD1.5 UNet with a temporal module in every transformer block, and the lum → latent injection.

The diffusers `UNet2DConditionModel` is kept intact (`self.unet`, same parameter names as SD1.5);
the temporal modules live in `self.temporal_layers` and are attached with two forward hooks per
transformer block: one on `norm1` remembers the block's input h, one on `attn1` turns the
self-attention output a into a + T(h + a). The block then adds h, so its stream becomes
h' = h + a followed by h' + T(h') — TDA after spatial self-attention, before cross-attention —
without copying any diffusers code. Frames are folded into the batch: `(b f) c h w`.

With `phrase_values`, the text states arrive as keys then values, `(b, 2·77, d)`: diffusers gets
the keys, and a pre-hook on every cross-attention's `to_v` hands it the values instead
(`lc4.models.phrases`), whatever attention backend runs the layer.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from .attention import zero_module
from .config import check_lc4_unet_config
from .tda import TEMPORAL_KINDS, ClipGeometry, TemporalFuser, make_temporal_module  # noqa: F401


def _level_sizes(height: int, width: int, levels: int = 8) -> list[tuple[int, int]]:
    """Feature-map sizes of a UNet whose downsamplers are stride-2, padding-1 convs."""
    sizes = [(height, width)]
    for _ in range(levels):
        height, width = (height + 1) // 2, (width + 1) // 2
        sizes.append((height, width))
    return sizes


class LC4UNet(ModelMixin, ConfigMixin):
    """SD1.5 UNet + one temporal module per transformer block + zero-initialised lum injection."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict[str, Any],
        temporal_module: str = "tda",
        tda_alpha: float = 4.0,
        tda_spatial_stride: int = 2,
        tda_temporal_stride: int = 2,
        tda_position_bias: bool = False,
        tda_padding: str = "zeros",
        tda_position_bias_sigma: tuple[float, float] = (1.0, 16.0),
        lum_channels: int = 8,
        lum_feature_channels: int = 0,
        phrase_values: bool = False,
    ):
        super().__init__()
        # one clear line per nonsense value (NaN alpha, a string of channels, ...) before anything is built
        check_lc4_unet_config(
            {"unet_config": unet_config, "temporal_module": temporal_module, "tda_alpha": tda_alpha,
             "tda_spatial_stride": tda_spatial_stride, "tda_temporal_stride": tda_temporal_stride,
             "tda_position_bias": tda_position_bias, "tda_padding": tda_padding,
             "tda_position_bias_sigma": tda_position_bias_sigma,
             "lum_channels": lum_channels, "lum_feature_channels": lum_feature_channels,
             "phrase_values": phrase_values},
            "LC4UNet",
        )
        self.unet = UNet2DConditionModel(**{k: v for k, v in unet_config.items() if not k.startswith("_")})
        latent = self.unet.config.in_channels
        self.lum_injection = zero_module(nn.Conv2d(lum_channels, latent, 3, padding=1))
        # not in L-C4 (docs/decisions.md): E^lum's latent-level feature maps added to conv_in's output
        self.lum_feature_injection = None
        self._lum_features: torch.Tensor | None = None
        if lum_feature_channels:
            width = self.unet.config.block_out_channels[0]
            self.lum_feature_injection = zero_module(nn.Conv2d(lum_feature_channels, width, 3, padding=1))
            self.unet.conv_in.register_forward_hook(self._add_lum_features)
        self._values: torch.Tensor | None = None
        if phrase_values:
            for block in self.transformer_blocks():
                if block.attn2 is not None:
                    block.attn2.to_v.register_forward_pre_hook(self._value_input)
        self._geometry: tuple[int, int, int] | None = None  # (frames, latent height, latent width)
        self._fuser: TemporalFuser | None = None
        self._temporal_on = True
        self.temporal_layers = nn.ModuleList()
        if temporal_module != "none":
            for block in self.transformer_blocks():
                attn = block.attn1
                dim_head = attn.inner_dim // attn.heads
                layer = make_temporal_module(
                    temporal_module, attn.query_dim, attn.heads, dim_head,
                    alpha=tda_alpha, spatial_stride=tda_spatial_stride, temporal_stride=tda_temporal_stride,
                    position_bias=tda_position_bias, padding=tda_padding,
                    position_bias_sigma=tda_position_bias_sigma,
                )
                self.temporal_layers.append(layer)
                self._attach(block, layer)

    def _add_lum_features(self, _module, _args, hidden: torch.Tensor) -> torch.Tensor:
        if self._lum_features is None:  # called without lum input, like lum_injection
            return hidden
        return hidden + self.lum_feature_injection(self._lum_features.to(hidden.dtype))

    def _value_input(self, _module: nn.Linear, args) -> tuple[torch.Tensor] | None:
        """`to_v` projects the value states instead of the keys' (projecting only once)."""
        if self._values is None:
            return None
        if self._values.shape != args[0].shape:
            raise RuntimeError(f"value states {tuple(self._values.shape)} do not match the keys' {tuple(args[0].shape)}")
        return (self._values.to(args[0].dtype),)

    def transformer_blocks(self) -> list[BasicTransformerBlock]:
        """Every transformer block of the UNet, in execution order of definition."""
        return [m for m in self.unet.modules() if isinstance(m, BasicTransformerBlock)]

    def _attach(self, block: BasicTransformerBlock, layer: nn.Module) -> None:
        state: dict[str, torch.Tensor] = {}

        def remember_input(_module, args):
            state["h"] = args[0]

        def add_temporal(_module, _args, attn_out):
            h = state.pop("h")
            if not self._temporal_on:
                return attn_out
            if h.ndim == 4:  # diffusers squeezes (b, 1, n, c) after attn1; mirror it
                h = h.squeeze(1)
            geometry = self.clip_geometry(attn_out.shape[1])
            update = layer(h + attn_out, geometry)
            if self._fuser is not None:
                update = self._fuser(update, geometry)
            return attn_out + update

        block.norm1.register_forward_pre_hook(remember_input)
        block.attn1.register_forward_hook(add_temporal)

    def clip_geometry(self, tokens: int) -> ClipGeometry:
        """Unfold `tokens` = h·w for the current forward: which UNet level has that many cells."""
        if self._geometry is None:
            raise RuntimeError("LC4UNet temporal layers need num_frames: call LC4UNet.forward, not .unet")
        frames, height, width = self._geometry
        for h, w in _level_sizes(height, width):
            if h * w == tokens:
                return ClipGeometry(frames, h, w)
        raise ValueError(f"cannot place {tokens} tokens on a latent of {height}x{width}")

    @contextlib.contextmanager
    def temporal_fusion(self, fuser: TemporalFuser | None) -> Iterator[None]:
        """Within the block, every temporal module's output passes through `fuser` (exact CCF)."""
        previous, self._fuser = self._fuser, fuser
        try:
            yield
        finally:
            self._fuser = previous

    @contextlib.contextmanager
    def frames_independent(self) -> Iterator[None]:
        """Within the block the temporal layers add nothing: every frame is denoised on its own, as by the
        image model they were added to (the frame-independent term of `lc4.sampling.temporally_guided`)."""
        previous, self._temporal_on = self._temporal_on, False
        try:
            yield
        finally:
            self._temporal_on = previous

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        *,
        num_frames: int,
        lum_moments: torch.Tensor | None = None,
        **unet_kwargs: Any,
    ) -> torch.Tensor:
        """Predict noise for `(b f) c h w` latents; `lum_moments` are E^lum's `(b f) 2c h w` outputs.

        With `lum_feature_channels`, `lum_moments` carries E^lum's latent-level feature maps after the
        moments, `(b f) (2c + lum_feature_channels) h w` (`LC4Model.unet_lum_input` builds it).
        """
        if sample.shape[0] % num_frames:
            raise ValueError(f"batch of {sample.shape[0]} frames is not a multiple of num_frames={num_frames}")
        moments_channels = self.config.lum_channels
        expected = moments_channels + self.config.lum_feature_channels
        if lum_moments is not None and lum_moments.shape[1] != expected:
            raise ValueError(f"lum input has {lum_moments.shape[1]} channels; this UNet takes {expected} "
                             f"({moments_channels} moments + {self.config.lum_feature_channels} feature channels)")
        if lum_moments is not None:
            sample = sample + self.lum_injection(lum_moments[:, :moments_channels].to(sample.dtype))
        self._lum_features = None if lum_moments is None else lum_moments[:, moments_channels:]
        if self.config.phrase_values:
            if encoder_hidden_states.shape[1] % 2:
                raise ValueError(f"this UNet takes keys then values: an even number of text states, "
                                 f"got {encoder_hidden_states.shape[1]}")
            encoder_hidden_states, self._values = encoder_hidden_states.chunk(2, dim=1)
        # kept after the call: gradient checkpointing re-runs the blocks during backward
        self._geometry = (num_frames, sample.shape[-2], sample.shape[-1])
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False, **unet_kwargs)[0]

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None) -> None:
        self.unet.enable_gradient_checkpointing() if enable else self.unet.disable_gradient_checkpointing()

    def enable_gradient_checkpointing(self, *args: Any, **kwargs: Any) -> None:
        self.unet.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, **temporal_config: Any) -> "LC4UNet":
        """Wrap a loaded SD1.5 UNet: same weights, new parts at their (zero) initialisation."""
        model = cls(unet_config=dict(unet.config), **temporal_config)
        model.unet.load_state_dict(unet.state_dict())
        return model if model.dtype == unet.dtype else model.to(dtype=unet.dtype)
