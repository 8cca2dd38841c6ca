"""Guidance with its own scale for the temporal layers (`temporal_guidance`, not in L-C4).

Classifier-free guidance runs both branches through the temporal layers, so the guidance scale also
multiplies what they do differently in the two branches. `temporally_guided` guides the sentence
with them off and adds the temporal layers' own term at scale s_T.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lc4
from lc4.pipeline import LC4Pipeline
from lc4.prompts import parse_prompt_schedule
from lc4.sampling import check_temporal_gate, check_temporal_guidance, guided, sentence_gate, temporally_guided
from test_pipeline import colorize, grey_video, perturb_temporal

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coupled_pipe() -> LC4Pipeline:
    return perturb_temporal(LC4Pipeline.from_config(lc4.LC4Config.tiny(), seed=0), std=0.2)


def test_temporally_guided_is_text_guidance_plus_the_scaled_temporal_term():
    gen = torch.Generator().manual_seed(0)
    independent, coupled = torch.randn(2, 5, 4, 8, 8, generator=gen), torch.randn(1, 5, 4, 8, 8, generator=gen)
    u, c, ct = independent[0], independent[1], coupled[0]
    assert torch.allclose(temporally_guided(coupled, independent, 3.0, 2.0), u + 3.0 * (c - u) + 2.0 * (ct - c))
    # no temporal effect (coupled == independent conditional): plain classifier-free guidance, at any s_T
    assert torch.allclose(temporally_guided(independent[1:], independent, 4.5, 7.0), guided(independent, 4.5))
    # s_T = 0: the frame-independent model's guidance, whatever the temporal layers predict
    assert torch.equal(temporally_guided(coupled, independent, 4.5, 0.0), guided(independent, 4.5))
    # without an unconditional branch (guidance 1): the conditional prediction plus the temporal term
    assert torch.allclose(temporally_guided(coupled, independent[1:], 1.0, 0.5), c + 0.5 * (ct - c))


@torch.no_grad()
def test_frames_independent_is_the_unet_without_its_temporal_layers(coupled_pipe):
    unet = coupled_pipe.model.unet
    gen = torch.Generator().manual_seed(1)
    x, text = torch.randn(8, 4, 8, 8, generator=gen), torch.randn(8, 77, unet.unet.config.cross_attention_dim,
                                                                   generator=gen)
    lum = torch.randn(8, unet.config.lum_channels + unet.config.lum_feature_channels, 8, 8, generator=gen)
    coupled = unet(x, 500, text, num_frames=4, lum_moments=lum)
    with unet.frames_independent():
        off = unet(x, 500, text, num_frames=4, lum_moments=lum)
    assert unet._temporal_on  # restored on leaving
    saved = [layer.to_out.weight.clone() for layer in unet.temporal_layers]
    try:
        for layer in unet.temporal_layers:
            layer.to_out.weight.zero_()
        zeroed = unet(x, 500, text, num_frames=4, lum_moments=lum)
    finally:
        for layer, weight in zip(unet.temporal_layers, saved):
            layer.to_out.weight.copy_(weight)
    assert torch.allclose(off, zeroed, atol=1e-6)
    assert (coupled - off).abs().max() > 1e-3  # the perturbed temporal layers do act
    # each frame alone: frame 0 of a 4-frame clip is the same as frame 0 run as a one-frame clip
    with unet.frames_independent():
        single = unet(x[:1], 500, text[:1], num_frames=1, lum_moments=lum[:1])
    assert torch.allclose(off[:1], single, atol=1e-5)


def test_pipeline_temporal_guidance_matches_its_limits(coupled_pipe):
    """s_T = 0 is the model with its temporal layers zeroed; with zero temporal layers every s_T is CFG."""
    video = grey_video(8)
    paper = colorize(coupled_pipe, video, fusion="exact")
    off = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=0.0)
    one = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=1.0)
    strong = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=3.0)
    plain = LC4Pipeline.from_config(lc4.LC4Config.tiny(), seed=0)  # the same weights, temporal layers at zero
    image = colorize(plain, video, fusion="exact")
    assert np.abs(off.astype(int) - image.astype(int)).max() <= 1
    assert np.abs(colorize(plain, video, fusion="exact", temporal_guidance=2.0).astype(int)
                  - image.astype(int)).max() <= 1
    assert len({paper.tobytes(), off.tobytes(), one.tobytes(), strong.tobytes()}) == 4
    # bounded fusion and no guidance run too, same geometry
    assert colorize(coupled_pipe, grey_video(12), fusion="bounded", temporal_guidance=1.0,
                    guidance_scale=1.0).shape == (12, 32, 32, 3)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "1", True])
def test_bad_temporal_guidance_is_one_line(bad, coupled_pipe):
    with pytest.raises(ValueError, match=r"^temporal_guidance must be a finite number >= 0 .*got") as err:
        check_temporal_guidance(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="temporal_guidance must be"):
        colorize(coupled_pipe, grey_video(4), temporal_guidance=bad)


def test_sentence_gate_keeps_the_temporal_term_where_the_sentence_is_silent():
    gen = torch.Generator().manual_seed(2)
    uncond = torch.randn(3, 4, 6, 6, generator=gen)
    direction = torch.randn(3, 4, 6, 6, generator=gen)
    direction = direction / direction.pow(2).mean(1, keepdim=True).sqrt()  # RMS 1 over channels, per pixel
    scale = torch.zeros(3, 1, 6, 6)
    scale[:, :, :3] = 2.0  # the sentence speaks in the top half (RMS 2), not in the bottom half (RMS 0)
    scale[1, :, 5] = 0.5  # and says as much as the width in one row of frame 1
    independent = torch.stack([uncond, uncond + scale * direction])
    gate = sentence_gate(independent, 0.5)
    assert gate.shape == (3, 1, 6, 6)
    assert torch.allclose(gate[:, :, 3:5], torch.ones(1))  # silent: the full temporal term
    assert torch.allclose(gate[:, :, :3], torch.full((1,), 1 / (1 + 4.0 ** 4)))  # 4 widths: 1/257
    assert torch.allclose(gate[1, :, 5], torch.full((1,), 0.5))  # one width: half
    coupled = torch.randn(1, 3, 4, 6, 6, generator=gen)
    gated = temporally_guided(coupled, independent, 1.5, 2.0, gate_width=0.5)
    expected = guided(independent, 1.5) + 2.0 * gate * (coupled[0] - independent[1])
    assert torch.allclose(gated, expected, atol=1e-6)
    # where the sentence is silent, the gated and the ungated guidance are the same
    assert torch.allclose(gated[:, :, 3:5], temporally_guided(coupled, independent, 1.5, 2.0)[:, :, 3:5], atol=1e-6)


@pytest.mark.parametrize("width, s_t, scale, message", [
    (0.0, 1.0, 1.5, "must be a finite number > 0"), (float("nan"), 1.0, 1.5, "must be a finite number > 0"),
    (True, 1.0, 1.5, "must be a finite number > 0"), (0.4, None, 1.5, "set temporal_guidance too"),
    (0.4, 1.0, 1.0, "use guidance_scale != 1")])
def test_bad_temporal_gate_is_one_line(width, s_t, scale, message, coupled_pipe):
    with pytest.raises(ValueError, match=message) as err:
        check_temporal_gate(width, s_t, scale)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):
        colorize(coupled_pipe, grey_video(4), temporal_guidance=s_t, temporal_gate=width, guidance_scale=scale)


def test_pipeline_temporal_gate_moves_between_its_limits(coupled_pipe):
    """A very wide gate is the ungated term; a very narrow one leaves only the sentence's guidance."""
    video = grey_video(8)
    free = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=2.0)
    wide = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=2.0, temporal_gate=1e6)
    narrow = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=2.0, temporal_gate=1e-6)
    off = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=0.0)
    middle = colorize(coupled_pipe, video, fusion="exact", temporal_guidance=2.0, temporal_gate=0.05)
    assert np.abs(wide.astype(int) - free.astype(int)).max() <= 1
    assert np.abs(narrow.astype(int) - off.astype(int)).max() <= 1
    assert len({free.tobytes(), off.tobytes(), middle.tobytes()}) == 3


@torch.no_grad()
def test_frames_independent_prediction_needs_one_evaluation_per_frame(coupled_pipe):
    """With the temporal layers off, fusing over the skip windows' clips gives each frame's own ε̂:
    the pipeline's temporal guidance evaluates that branch once per frame (clip by clip)."""
    from lc4 import ccf
    from lc4.sampling import fused_noise_prediction

    pipe, frames = coupled_pipe, 20
    grey = torch.full((frames, 32, 32), 90, dtype=torch.uint8)
    cond = pipe._conditioning(grey, parse_prompt_schedule("a red ball", frames), "", 3.0, 8, torch.device("cpu"))
    latents = torch.randn(frames, 4, *cond.lum_moments.shape[-2:], generator=torch.Generator().manual_seed(3))
    n = pipe.model.config.num_frames
    skip = ccf.make_layout(frames, n, mode="skip")
    alone = ccf.make_layout(frames, n, mode="none")
    assert skip.frame_evaluations > 2 * alone.frame_evaluations  # what the shortcut saves
    with pipe.model.unet.frames_independent():
        fused = fused_noise_prediction(pipe.model, latents, torch.tensor(500), cond, skip, exact=True)
        each = fused_noise_prediction(pipe.model, latents, torch.tensor(500), cond, alone, exact=False, max_clips=2)
    assert torch.allclose(fused, each, atol=1e-5)
    coupled = fused_noise_prediction(pipe.model, latents, torch.tensor(500), cond, skip, exact=True)
    assert (coupled - fused).abs().max() > 1e-3  # with the temporal layers on, the clips do matter
