"""LC4UNet: equals SD1.5's UNet at initialisation, one TDA per transformer block, in the right place."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from lc4.models.sd15 import config
from lc4.models.unet import LC4UNet


def _inputs(frames=8, batch=2, h=8, w=12, ctx_dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = batch * frames
    return (
        torch.randn(n, 4, h, w, generator=g),
        torch.tensor(637),
        torch.randn(n, 77, ctx_dim, generator=g),
        torch.randn(n, 8, h, w, generator=g),
    )


def _assert_same_as_plain(unet_config, frames, h, w, ctx_dim):
    torch.manual_seed(0)
    plain = UNet2DConditionModel(**unet_config).eval()
    lc4 = LC4UNet.from_unet(plain).eval()
    x, t, ctx, lum = _inputs(frames, 2, h, w, ctx_dim)
    with torch.no_grad():
        expected = plain(x, t, ctx).sample
        got = lc4(x, t, ctx, num_frames=frames, lum_moments=lum)
    rel = (got - expected).abs().max() / expected.abs().max()
    assert rel <= 1e-5
    return lc4


@pytest.mark.parametrize("kind", ["tda", "temporal_attention", "conv3d"])
def test_fresh_lc4_unet_equals_plain_diffusers_unet(kind):
    torch.manual_seed(0)
    plain = UNet2DConditionModel(**config("tiny_unet")).eval()
    lc4 = LC4UNet.from_unet(plain, temporal_module=kind).eval()
    x, t, ctx, lum = _inputs()
    with torch.no_grad():
        expected = plain(x, t, ctx).sample
        got = lc4(x, t, ctx, num_frames=8, lum_moments=lum)
    assert (got - expected).abs().max() / expected.abs().max() <= 1e-5


@pytest.mark.slow
def test_fresh_lc4_unet_equals_plain_unet_at_full_sd15_size():
    lc4 = _assert_same_as_plain(config("sd15_unet"), frames=4, h=16, w=16, ctx_dim=768)
    assert len(lc4.temporal_layers) == 16


def test_one_temporal_layer_per_transformer_block_between_attn1_and_attn2():
    plain = UNet2DConditionModel(**config("tiny_unet"))
    lc4 = LC4UNet.from_unet(plain)
    blocks = lc4.transformer_blocks()
    assert len(lc4.temporal_layers) == len(blocks) == 7  # tiny: 2 down + 1 mid + 2·2 up
    order: list[tuple[str, int]] = []
    for i, (block, layer) in enumerate(zip(blocks, lc4.temporal_layers)):
        block.attn1.register_forward_pre_hook(lambda *_a, i=i: order.append(("attn1", i)))
        layer.register_forward_pre_hook(lambda *_a, i=i: order.append(("temporal", i)))
        block.attn2.register_forward_pre_hook(lambda *_a, i=i: order.append(("attn2", i)))
    x, t, ctx, lum = _inputs(frames=2, batch=1)
    with torch.no_grad():
        lc4(x, t, ctx, num_frames=2)
    for i in range(len(blocks)):
        assert [k for k, j in order if j == i] == ["attn1", "temporal", "attn2"]


def test_sd15_config_has_sixteen_transformer_blocks():
    with torch.device("meta"):
        lc4 = LC4UNet(unet_config=config("sd15_unet"))
    assert len(lc4.temporal_layers) == len(lc4.transformer_blocks()) == 16


def test_temporal_update_enters_the_residual_stream():
    """A non-zero TDA changes the output; its update is h' + T(h'), h' = h + attn1(norm1(h))."""
    torch.manual_seed(0)
    lc4 = LC4UNet(unet_config=config("tiny_unet")).eval()
    x, t, ctx, _ = _inputs(frames=4, batch=1)
    with torch.no_grad():
        base = lc4(x, t, ctx, num_frames=4)
        for layer in lc4.temporal_layers:
            torch.nn.init.normal_(layer.to_out.weight, std=0.05)
        moved = lc4(x, t, ctx, num_frames=4)
    assert (moved - base).abs().max() > 1e-3


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    lc4 = LC4UNet(unet_config=config("tiny_unet"))
    for layer in lc4.temporal_layers:
        torch.nn.init.normal_(layer.to_out.weight, std=0.05)
    torch.nn.init.normal_(lc4.lum_injection.weight, std=0.05)
    x, t, ctx, lum = _inputs(frames=4, batch=1)

    def grads():
        lc4.zero_grad()
        lc4(x, t, ctx, num_frames=4, lum_moments=lum).square().mean().backward()
        return {n: p.grad.clone() for n, p in lc4.named_parameters() if p.grad is not None}

    lc4.train()
    plain = grads()
    lc4.enable_gradient_checkpointing()
    assert lc4.unet.is_gradient_checkpointing
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    # the offset head is zero-initialised, so the first gradients reach exactly that layer of δ_offset
    heads = [n for n in plain if "sampler.offset_net.2.weight" in n]
    assert len(heads) == 7 and all(plain[n].abs().sum() > 0 for n in heads)
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6, rtol=1e-4), name


def test_any_clip_length_and_odd_latent_sizes():
    lc4 = LC4UNet(unet_config=config("tiny_unet")).eval()
    for layer in lc4.temporal_layers:
        torch.nn.init.normal_(layer.to_out.weight, std=0.05)
    for frames, h, w in [(1, 8, 8), (3, 9, 7), (5, 6, 10), (8, 5, 5)]:
        x = torch.randn(frames, 4, h, w)
        with torch.no_grad():
            out = lc4(x, torch.tensor(10), torch.randn(frames, 77, 32), num_frames=frames)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_batch_must_be_a_multiple_of_num_frames():
    lc4 = LC4UNet(unet_config=config("tiny_unet"))
    with pytest.raises(ValueError, match="multiple of num_frames"):
        lc4(torch.randn(5, 4, 8, 8), torch.tensor(1), torch.randn(5, 77, 32), num_frames=2)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    lc4 = LC4UNet(unet_config=config("tiny_unet"), temporal_module="tda", tda_alpha=2.0).eval()
    for p in lc4.temporal_layers.parameters():
        torch.nn.init.normal_(p, std=0.05)
    lc4.save_pretrained(tmp_path)
    again = LC4UNet.from_pretrained(tmp_path).eval()
    assert again.config.tda_alpha == 2.0
    x, t, ctx, lum = _inputs(frames=4, batch=1)
    with torch.no_grad():
        assert torch.equal(lc4(x, t, ctx, num_frames=4, lum_moments=lum), again(x, t, ctx, num_frames=4, lum_moments=lum))


def test_lum_feature_injection_starts_at_zero_then_reads_the_features():
    """`lum_feature_channels` (not in L-C4): a fresh one is the spec UNet; trained, the features count."""
    torch.manual_seed(0)
    spec = LC4UNet(unet_config=config("tiny_unet")).eval()
    feat = LC4UNet(unet_config=config("tiny_unet"), lum_feature_channels=16).eval()
    missing, unexpected = feat.load_state_dict(spec.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("lum_feature_injection") for k in missing)
    x, t, ctx, lum = _inputs(frames=4, batch=1)
    features = torch.randn(x.shape[0], 16, *x.shape[-2:])
    with torch.no_grad():
        expected = spec(x, t, ctx, num_frames=4, lum_moments=lum)
        assert torch.equal(feat(x, t, ctx, num_frames=4, lum_moments=torch.cat([lum, features], 1)), expected)
        torch.nn.init.normal_(feat.lum_feature_injection.weight, std=0.1)
        a = feat(x, t, ctx, num_frames=4, lum_moments=torch.cat([lum, features], 1))
        b = feat(x, t, ctx, num_frames=4, lum_moments=torch.cat([lum, -features], 1))
    assert (a - b).abs().max() > 1e-3 * expected.abs().max()
    with pytest.raises(ValueError, match="8 moments \\+ 16 feature channels"):
        feat(x, t, ctx, num_frames=4, lum_moments=lum)
