"""Multi-frame training must teach a temporal module to keep a free colour over the clip.

The toy of benchmarks/toy_temporal.py: clips whose shape colour is drawn per clip and never given to
the denoiser, sampled with the real DDIM scheduler from per-frame noise. With its frames independent
a denoiser can only pick each frame's colour from that frame's noise; trained on 4-frame clips with
lc4's TDA (the paper's module, 2×2×2 pooling) it must pick one colour per clip: at most half the
flip rate, with the shape still coloured and the choices still varied across clips.
"""

from __future__ import annotations

import pytest

from tests.test_learning import load_benchmark


@pytest.mark.slow
@pytest.mark.parametrize("kind, options", [("tda", {}), ("temporal_attention", {})])
def test_multi_frame_training_halves_the_flip_rate_of_independent_frames(kind, options):
    toy = load_benchmark("toy_temporal")
    independent = toy.toy_scores(toy.train_toy(toy.ToyDenoiser("none"), 300, seed=0))
    temporal = toy.toy_scores(toy.train_toy(toy.ToyDenoiser(kind, **options), 300, seed=0))
    assert independent.flip_rate >= 0.2, independent  # the toy does leave the colour to the frames' noise
    assert temporal.flip_rate <= 0.5 * independent.flip_rate, (temporal, independent)
    for scores in (independent, temporal):  # neither greys the shape nor always picks one colour
        assert scores.coloured >= 0.9 and scores.entropy >= 0.7, scores


def test_toy_clips_hide_one_colour_per_clip_in_a_static_shape():
    import torch

    toy = load_benchmark("toy_temporal")
    clean, masks, color = toy.toy_clips(3, 4, 4, 4, torch.Generator().manual_seed(0))
    assert clean.shape == (12, 4, 4, 4) and masks.shape == (12, 1, 4, 4)
    for b in range(3):
        frames = clean[4 * b:4 * b + 4]
        assert torch.equal(frames, frames[:1].expand_as(frames))  # same colour, same place, every frame
        inside = frames[0][:, masks[4 * b, 0] > 0]
        assert torch.equal(inside.argmax(0), torch.full_like(inside[0], color[b], dtype=torch.long))
        assert frames[0][:, masks[4 * b, 0] == 0].abs().sum() == 0  # grey elsewhere


def test_toy_clips_slide_the_shape_inside_the_grid():
    import torch

    toy = load_benchmark("toy_temporal")
    clean, masks, color = toy.toy_clips(16, 4, 8, 4, torch.Generator().manual_seed(1), motion=2)
    masks = masks.view(16, 4, 8, 8)
    for clip in masks:
        area = clip.sum((-2, -1))
        assert torch.equal(area, area[:1].expand(4)) and area[0] == 4  # a whole 2x2 square in every frame
        ys, xs = zip(*[(m.nonzero()[:, 0].min().item(), m.nonzero()[:, 1].min().item()) for m in clip])
        steps = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(zip(ys, xs), zip(ys[1:], xs[1:]))}
        assert len(steps) == 1 and sorted(map(abs, steps.pop())) == [0, 2]  # 2 cells a frame, one direction
    with pytest.raises(ValueError, match="cannot hold"):
        toy.toy_clips(1, 4, 4, 4, torch.Generator(), motion=2)


def test_a_fresh_temporal_module_on_a_frozen_base_starts_as_the_base():
    import torch

    toy = load_benchmark("toy_temporal")
    base = toy.train_toy(toy.ToyDenoiser("none"), 5, seed=0)
    model = toy.on_frozen_base(base, "tda", spatial_stride=1, temporal_stride=1)
    clean, masks, _ = toy.toy_clips(2, 4, 4, 4, torch.Generator().manual_seed(0))
    t = torch.full((8,), 500)
    torch.testing.assert_close(model(clean, masks, t, 4), base(clean, masks, t, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    toy.train_toy(model, 3, only_temporal=True)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("temporal.") for k in changed)
