"""Attention kernels shared by TDA and CMPF: torch SDPA by default, xformers on CUDA when asked.

The backend is a process-wide switch so that the UNet (diffusers' own switch), TDA and CMPF all
use the same kernel; `describe_backend()` reports the choice at start-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

_BACKENDS = ("auto", "sdpa", "xformers")
_backend = "auto"


def xformers_available() -> bool:
    """True when xformers imports (it only runs on CUDA tensors)."""
    try:
        import xformers.ops  # noqa: F401
    except Exception:
        return False
    return True


def set_attention_backend(name: str) -> None:
    """Select `auto` (xformers on CUDA when installed, else SDPA), `sdpa` or `xformers`."""
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    if name == "xformers" and not xformers_available():
        raise ValueError("attention backend 'xformers' requested but xformers is not installed (pip install 'lc4[cuda]')")
    _backend = name


def resolve_backend(device: torch.device) -> str:
    """The kernel that runs on `device` under the current setting."""
    if _backend == "sdpa":
        return "sdpa"
    if device.type == "cuda" and (_backend == "xformers" or xformers_available()):
        return "xformers"
    return "sdpa"


def describe_backend(device: torch.device | str) -> str:
    """One line for start-up logs."""
    return f"attention backend: {resolve_backend(torch.device(device))} (setting: {_backend})"


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-head softmax attention of (b, n, h·d) queries over (b, m, h·d) keys/values.

    `bias` (b, h, n, m) is added to the logits; biased attention always runs on SDPA (xformers wants
    its bias padded to 8 keys; SDPA's memory-efficient CUDA kernel takes it as it is)."""
    if bias is None and resolve_backend(q.device) == "xformers":
        import xformers.ops as xops

        q, k, v = (rearrange(t, "b n (h d) -> b n h d", h=heads).contiguous() for t in (q, k, v))
        out = xops.memory_efficient_attention(q, k, v)
        return rearrange(out, "b n h d -> b n (h d)")
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
    return rearrange(out, "b h n d -> b n (h d)")


class MultiHeadAttention(nn.Module):
    """Plain multi-head attention with separate q/k/v projections (queries x, context c)."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int | None = None, context_dim: int | None = None):
        super().__init__()
        dim_head = dim_head or dim // heads
        inner = heads * dim_head
        context_dim = context_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attend(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` (for residual branches that must start as identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
