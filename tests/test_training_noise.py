"""Training on the mixed noise prior (`LC4Module(noise_correlation=ρ)`, not in L-C4): each clip's
frames share √ρ of their noise, as `LC4Pipeline(noise_correlation=ρ)` samples them."""

import pytest
import torch
from einops import rearrange

from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.sampling import initial_noise, mixed_noise
from lc4.training.losses import denoising_loss
from tests.test_training import tiny_module


def frame_correlation(noise: torch.Tensor, frames: int) -> torch.Tensor:
    """Correlation of frame 0 with frame 1 of every clip, pooled over clips and elements."""
    clips = rearrange(noise, "(b f) c h w -> b f (c h w)", f=frames)
    a, b = clips[:, 0].flatten(), clips[:, 1].flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1]


def test_mixed_noise_correlates_frames_within_a_clip_only():
    g = lambda: torch.Generator().manual_seed(0)
    shape = (64 * 4, 4, 8, 8)  # 64 clips of 4 frames
    assert torch.equal(mixed_noise(shape, 4, 0.0, g()), torch.randn(shape, generator=g()))
    same = rearrange(mixed_noise(shape, 4, 1.0, g()), "(b f) c h w -> b f c h w", f=4)
    assert torch.equal(same[:, 0], same[:, 3]) and not torch.equal(same[0, 0], same[1, 0])
    half = mixed_noise(shape, 4, 0.5, g())
    assert abs(float(frame_correlation(half, 4)) - 0.5) < 0.03
    assert abs(float(half.std()) - 1.0) < 0.02
    # the pipeline's initial noise is the same prior with the whole video as one clip
    assert torch.equal(initial_noise((8, 4, 8, 8), g(), 0.3), mixed_noise((8, 4, 8, 8), 8, 0.3, g()))


def test_denoising_loss_noises_each_clip_with_the_mixed_prior(monkeypatch):
    model = LC4Model.from_config(LC4Config.tiny(), seed=0)
    sched = model.noise_scheduler("DDPMScheduler")
    seen = {}
    add_noise = sched.add_noise
    monkeypatch.setattr(sched, "add_noise", lambda z, n, t: (seen.update(noise=n), add_noise(z, n, t))[1])
    pixels = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        loss = denoising_loss(model, pixels, ["a red star"] * 2, sched, generator=torch.Generator().manual_seed(1),
                              noise_correlation=1.0)
    clips = rearrange(seen["noise"], "(b f) c h w -> b f c h w", f=3)
    assert torch.isfinite(loss)
    assert torch.equal(clips[0, 0], clips[0, 2]) and not torch.equal(clips[0, 0], clips[1, 0])


def test_module_refuses_a_correlation_outside_0_1():
    with pytest.raises(ValueError, match="noise_correlation"):
        tiny_module(noise_correlation=1.5)
