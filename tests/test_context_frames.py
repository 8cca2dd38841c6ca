"""Cleaner context frames inside noisy training clips (`context_frame_fraction`, not in L-C4)."""

import pytest
import torch
from einops import rearrange

from lc4.training.losses import context_timesteps


def test_context_frames_are_one_cleaner_frame_in_the_chosen_clips():
    b, f = 400, 8
    t = torch.randint(100, 1000, (b,)).repeat_interleave(f)
    g = torch.Generator().manual_seed(0)
    out = rearrange(context_timesteps(t, f, 0.5, g), "(b f) -> b f", f=f)
    clip_t = rearrange(t, "(b f) -> b f", f=f)
    changed = out != clip_t
    per_clip = changed.sum(1)
    assert set(per_clip.tolist()) <= {0, 1}  # at most one frame per clip (a draw of exactly t is rare)
    assert 0.4 < (per_clip == 1).float().mean() < 0.6
    assert (out[changed] < clip_t[changed]).all()  # the context frame is cleaner
    assert (out[~changed] == clip_t[~changed]).all()
    assert torch.equal(context_timesteps(t, f, 0.0, g), t)
    assert torch.equal(context_timesteps(t, f, 0.5, torch.Generator().manual_seed(0)), rearrange(out, "b f -> (b f)"))


def test_context_fraction_is_checked():
    with pytest.raises(ValueError, match="context_frame_fraction"):
        context_timesteps(torch.zeros(8, dtype=torch.long), 8, 1.5)
