"""Cross-attention grounding: the recorded maps are the layers' own, the share is measured right,
and the auxiliary loss teaches each shape's pixels to attend to its own words."""

from pathlib import Path

import pytest
import torch
from einops import rearrange

from lc4.data.synthetic import SyntheticVideoDataset
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.training.grounding import (grounding_loss, instance_token_indicator, own_word_share,
                                    recorded_cross_attention, word_token_positions)
from lc4.training.losses import denoising_loss

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> LC4Model:
    return LC4Model.from_config(LC4Config.from_file(ROOT / "configs/model/demo.yaml"), seed=0)


def test_word_positions_and_the_indicator_follow_the_tokenizer(model):
    caption = "a red star and a blue circle on a green background"
    ids = model.tokenizer(caption)["input_ids"]
    pos = word_token_positions(caption, model.tokenizer, ["blue", "circle"])
    assert model.tokenizer.decode([ids[p] for p in pos]) == "blue circle"
    ind = instance_token_indicator([caption, ""], ["red star;blue circle", "red star"], model.tokenizer, 3, 77)
    assert ind.shape == (2, 3, 77)
    assert model.tokenizer.decode([ids[p] for p in ind[0, 0].nonzero().flatten()]) == "red star"
    assert ind[0, 2].sum() == 0 and ind[1].sum() == 0  # a padded slot, a dropped caption
    with pytest.raises(ValueError, match="not in the caption"):
        word_token_positions(caption, model.tokenizer, ["square"])


def test_own_word_share_of_routed_and_uniform_attention():
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2], masks[0, 1, 2:] = 1, 1  # shape 0 on the top half, shape 1 on the bottom
    ind = torch.zeros(1, 2, 6)
    ind[0, 0, [1, 2]], ind[0, 1, [3, 4]] = 1, 1
    routed = torch.zeros(1, 1, 16, 6)
    routed[0, 0, :8, 1], routed[0, 0, 8:, 4] = 1, 1
    own, other, valid = own_word_share(routed, masks, ind)
    assert valid.all() and torch.allclose(own, torch.ones(1, 1, 2)) and torch.allclose(other, torch.zeros(1, 1, 2))
    own, other, _ = own_word_share(torch.full((1, 1, 16, 6), 1 / 6), masks, ind)
    torch.testing.assert_close(own, torch.full((1, 1, 2), 2 / 6))
    torch.testing.assert_close(other, own)
    maps = {"layer": [torch.full((1, 1, 16, 6), 1 / 6)]}
    torch.testing.assert_close(grounding_loss(maps, masks, ind), torch.log(torch.tensor(2.0)), atol=1e-3, rtol=0)
    assert grounding_loss({"layer": [routed]}, masks, ind) < 1e-3
    one_shape = ind.clone()
    one_shape[0, 1] = 0  # no other shape's words: nothing to split, no loss
    assert not own_word_share(routed, masks, one_shape)[2].any()
    assert grounding_loss(maps, masks, one_shape) == 0


def test_recorded_maps_are_the_layers_own_attention(model):
    """to_out(A·V) from the recorded A reproduces each attn2's output."""
    outputs = {}

    def keep(mod, args, kwargs, out, name):
        outputs.setdefault(name, (mod, args, kwargs, out))

    handles = [m.register_forward_hook(lambda mod, a, kw, out, n=n: keep(mod, a, kw, out, n), with_kwargs=True)
               for n, m in model.unet.named_modules() if n.endswith("attn2")]
    ds = SyntheticVideoDataset(1, num_frames=2, size=32, num_shapes=(2, 2))
    rgb = ds[0]["pixel_values"]
    with torch.no_grad(), recorded_cross_attention(model.unet) as maps:
        text = model.encode_prompt([ds[0]["caption"]])
        lum = model.encode_luminance(rgb.mean(1, keepdim=True).repeat(1, 3, 1, 1))
        model.predict_noise(torch.randn(2, 4, 8, 8), torch.tensor([500, 500]), text.embeddings, lum, 2)
    for h in handles:
        h.remove()
    assert set(maps) == set(outputs) and len(maps) >= 5
    for name, (mod, args, kwargs, out) in outputs.items():
        probs = maps[name][0]
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs[..., 0]))
        v = rearrange(mod.to_v(kwargs["encoder_hidden_states"]), "b n (h d) -> b h n d", h=mod.heads)
        mixed = rearrange(probs @ v, "b h n d -> b n (h d)")
        torch.testing.assert_close(mod.to_out[0](mixed), out, atol=1e-5, rtol=1e-4)


def test_grounding_term_adds_linearly_and_needs_instances(model):
    ds = SyntheticVideoDataset(2, num_frames=2, size=32, num_shapes=(2, 2), with_masks=True)
    items = [ds[i] for i in range(2)]
    pixels = torch.stack([it["pixel_values"] for it in items])
    masks = torch.stack([it["instance_masks"] for it in items])
    words = [it["instance_words"] for it in items]
    assert masks.shape == (2, 2, 2, 32, 32) and words[0].count(";") == 1
    sched = model.noise_scheduler("DDPMScheduler")

    def loss(w):
        with torch.no_grad():
            return denoising_loss(model, pixels, [it["caption"] for it in items], sched, caption_dropout=0.0,
                                  generator=torch.Generator().manual_seed(0), instance_masks=masks,
                                  instance_words=words, grounding_weight=w)

    base, one, two = loss(0.0), loss(1.0), loss(2.0)
    assert one - base > 0.3  # an untrained UNet splits its attention about evenly: about log 2
    torch.testing.assert_close(two - base, 2 * (one - base), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="instance_masks"):
        denoising_loss(model, pixels, ["a", "b"], sched, grounding_weight=1.0)


def test_grounding_loss_teaches_the_attention_to_route():
    """A few steps on the grounding loss alone raise the own-word share well above one half."""
    torch.manual_seed(0)
    model = LC4Model.from_config(LC4Config.from_file(ROOT / "configs/model/demo.yaml"), seed=0)
    ds = SyntheticVideoDataset(4, num_frames=2, size=32, num_shapes=(2, 2), with_masks=True)
    items = [ds[i] for i in range(4)]
    rgb = torch.cat([it["pixel_values"] for it in items])
    masks = torch.cat([it["instance_masks"] for it in items])
    ind = instance_token_indicator([it["caption"] for it in items], [it["instance_words"] for it in items],
                                   model.tokenizer, 2, 77).repeat_interleave(2, dim=0)
    with torch.no_grad():
        text = model.encode_prompt([it["caption"] for it in items]).embeddings
        lum = model.encode_luminance(rgb.mean(1, keepdim=True).repeat(1, 3, 1, 1))
        latents = model.encode_frames(rgb, sample=False)
    params = [p for n, p in model.unet.named_parameters() if "attn2.to_q" in n or "attn2.to_k" in n]
    opt = torch.optim.Adam(params, lr=3e-2)
    t = torch.full((8,), 900)

    def step():
        with recorded_cross_attention(model.unet, detach=False) as maps:
            model.predict_noise(latents, t, text, lum, 2)
        return grounding_loss(maps, masks, ind)

    first = step().item()
    for _ in range(30):
        opt.zero_grad()
        loss = step()
        loss.backward()
        opt.step()
    assert first > 0.6 and step().item() < 0.5 * first


def test_cross_attention_probe_reads_every_layer(model):
    """The benchmark's per-video probe: one (own, other) pair per visible shape, frame and head."""
    import importlib.util

    from lc4.evaluation.synthetic import held_out_video

    spec = importlib.util.spec_from_file_location("cross_attention_probe", ROOT / "benchmarks/cross_attention_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    video = next(v for v in map(held_out_video, range(12)) if v.num_instances == 2)
    out = probe.probe_video(model, video, 900, torch.Generator().manual_seed(0))
    heads = {n: m.heads for n, m in model.unet.named_modules() if n.endswith("attn2")}
    assert set(out) == set(heads)
    visible = int((video.masks.sum((2, 3)) > 0).sum())  # (frame, shape) pairs with pixels
    for name, pairs in out.items():
        assert 0 < len(pairs) <= visible * heads[name] and len(pairs) % heads[name] == 0
        arr = torch.tensor(pairs)
        assert (arr >= 0).all() and (arr.sum(1) <= 1 + 1e-5).all()
