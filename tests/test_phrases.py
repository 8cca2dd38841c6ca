"""Phrase values: colour phrases are found as the tokenizer splits them, their states come from the
phrase encoded alone, and a UNet that takes them is the plain UNet when values equal keys."""

from pathlib import Path

import pytest
import torch

from lc4.data.synthetic import SyntheticVideoDataset
from lc4.evaluation.synthetic import held_out_video
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.models.phrases import colour_phrases
from lc4.pipeline import LC4Pipeline
from lc4.training.grounding import word_token_positions
from lc4.training.losses import denoising_loss

ROOT = Path(__file__).resolve().parents[1]


def demo_config(**overrides) -> LC4Config:
    config = LC4Config.from_file(ROOT / "configs/model/demo.yaml")
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def model() -> LC4Model:
    return LC4Model.from_config(demo_config(phrase_values=True), seed=0).eval()


def test_every_benchmark_instance_and_background_is_one_phrase(model):
    tok = model.tokenizer
    for k in range(40):
        video = held_out_video(k)
        found = {p.text: p.positions for p in colour_phrases(video.caption, tok, 77)}
        expected = [f"{c} {s}" for c, s in zip(video.instance_colors, video.shapes)]
        expected.append(f"{video.background_color} background")
        assert sorted(found) == sorted(expected), video.caption
        for text in expected:
            assert found[text] == tuple(word_token_positions(video.caption, tok, text.split()))


def test_phrase_boundaries(model):
    tok = model.tokenizer
    texts = [p.text for p in colour_phrases("a star that is red and a navy-blue door, in a pale green room", tok, 77)]
    assert texts == ["red", "navy - blue door", "pale green room"]
    assert colour_phrases("a cat on a mat", tok, 77) == []
    long = "a cat " * 40 + "and a red star"
    assert colour_phrases(long, tok, 77) == []  # beyond the 77-token window


def test_values_are_the_phrases_encoded_alone(model):
    prompts = ["a red star and a blue circle on a plum background", "", "a cat"]
    text = model.encode_prompt(prompts)
    assert text.phrases.owner.tolist() == [0, 0, 0]
    lum = model.encode_luminance(torch.zeros(2 * 3, 3, 64, 64))
    with torch.no_grad():
        fused = model.fuse_text(text, lum, 2, use_cmpf=False)
        alone = model.encode_prompt(["blue circle"]).embeddings
    keys, values = fused.chunk(2, dim=1)
    torch.testing.assert_close(keys, text.embeddings)
    pos = word_token_positions(prompts[0], model.tokenizer, ["blue", "circle"])
    torch.testing.assert_close(values[0, pos], alone[0, 1:3])
    changed = (values - keys).abs().amax(-1) > 0
    assert changed[0].sum() == 6 and not changed[1:].any()  # three two-word phrases; nothing elsewhere
    # a prompt selected from the batch keeps its own phrases
    one = text.select(0, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.fuse_text(one, model.encode_luminance(torch.zeros(2, 3, 64, 64)), 2,
                                                   use_cmpf=False), fused[:1])
    assert text.select(1, 3).phrases.owner.numel() == 0
    with pytest.raises(ValueError, match="encode the prompts"):
        model.fuse_text(type(text)(text.embeddings, text.color_mask), lum, 2)


def test_phrase_states_are_memoised_until_the_encoder_changes(model):
    from lc4.models import text as text_module
    prompts = ["a red star on a teal background"]
    calls = []
    hook = model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            first = model.encode_prompt(prompts).phrases.embeddings
            assert {"red star", "teal background"} <= set(text_module._PHRASE_MEMOS[model.text_encoder][1])
            calls.clear()
            again = model.encode_prompt(prompts).phrases.embeddings
            assert len(calls) == 1  # the sentence; its phrases come from the memo
            torch.testing.assert_close(again, first)
            weight = next(model.text_encoder.parameters())
            saved = weight.clone()
            weight.mul_(1.5)  # changed in place: the memo must not serve the old states
            calls.clear()
            changed = model.encode_prompt(prompts).phrases.embeddings
            assert len(calls) == 2
            weight.copy_(saved)
    finally:
        hook.remove()
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(model.encode_prompt(prompts).phrases.embeddings, first)


def test_unet_with_values_equal_to_keys_is_the_plain_unet(model):
    plain = LC4Model.from_config(demo_config(), seed=0).eval()
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    for p in model.unet.parameters():  # leave the zero-initialised parts non-zero, so every path counts
        p.data.add_(torch.randn_like(p) * 0.02)
    plain.load_state_dict(model.state_dict())
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([500, 500])
    keys, other = torch.randn(1, 77, 128), torch.randn(1, 77, 128)
    with torch.no_grad():
        base = plain.unet(x, t, keys.repeat(2, 1, 1), num_frames=2)
        same = model.unet(x, t, torch.cat([keys, keys], 1).repeat(2, 1, 1), num_frames=2)
        moved = model.unet(x, t, torch.cat([keys, other], 1).repeat(2, 1, 1), num_frames=2)
    torch.testing.assert_close(same, base, atol=1e-5, rtol=1e-4)
    assert (moved - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match="even number"):
        model.unet(x, t, torch.randn(2, 77, 128), num_frames=2)


def test_training_step_and_save_load_round_trip(model, tmp_path):
    ds = SyntheticVideoDataset(2, num_frames=2, size=64, num_shapes=(2, 2), with_masks=True)
    items = [ds[i] for i in range(2)]
    pixels = torch.stack([it["pixel_values"] for it in items])
    loss = denoising_loss(model, pixels, [it["caption"] for it in items], model.noise_scheduler("DDPMScheduler"),
                          caption_dropout=0.0, generator=torch.Generator().manual_seed(0),
                          instance_masks=torch.stack([it["instance_masks"] for it in items]),
                          instance_words=[it["instance_words"] for it in items], grounding_weight=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())
    model.zero_grad(set_to_none=True)
    pipe = LC4Pipeline(model)
    pipe.save_pretrained(tmp_path / "m")
    loaded = LC4Pipeline.from_pretrained(tmp_path / "m")
    assert loaded.model.unet.config.phrase_values and loaded.model.config.phrase_values
    grey = (items[0]["pixel_values"].mean(1).numpy() * 127.5 + 127.5).astype("uint8")
    kw = dict(num_inference_steps=2, guidance_scale=3.0, seed=0, progress=False)
    a = pipe(grey, items[0]["caption"], **kw).frames
    b = loaded(grey, items[0]["caption"], **kw).frames
    assert a.shape == (2, 64, 64, 3)
    assert abs(a.astype(int) - b.astype(int)).max() <= 1
