"""`independent_frames`: a multi-frame batch trained as one-frame clips (the control for what the
temporal layers learn from multi-frame clips, on the same data)."""

import torch

from lc4.training.module import frames_as_clips
from tests.test_training import quick_trainer, synthetic_dm, tiny_module


def test_frames_as_clips_unfolds_every_per_frame_field_in_order():
    b, f = 2, 3
    batch = {"pixel_values": torch.arange(b * f * 3 * 4 * 4, dtype=torch.float32).reshape(b, f, 3, 4, 4),
             "shape_mask": torch.rand(b, f, 4, 4), "instance_masks": torch.rand(b, f, 2, 4, 4),
             "caption": ["a red star", "a blue ring"], "instance_words": ["red star", "blue ring"]}
    out = frames_as_clips(batch)
    assert out["pixel_values"].shape == (b * f, 1, 3, 4, 4)
    assert torch.equal(out["pixel_values"][f + 1, 0], batch["pixel_values"][1, 1])
    assert torch.equal(out["shape_mask"][2, 0], batch["shape_mask"][0, 2])
    assert out["instance_masks"].shape == (b * f, 1, 2, 4, 4)
    assert out["caption"] == ["a red star"] * f + ["a blue ring"] * f
    assert out["instance_words"] == ["red star"] * f + ["blue ring"] * f


def test_training_step_with_independent_frames_sees_one_frame_clips(monkeypatch, tmp_path):
    module = tiny_module(independent_frames=True)
    seen = {}
    import lc4.training.module as module_file
    real = module_file.denoising_loss

    def spy(model, pixels, captions, *args, **kw):
        seen["shape"], seen["captions"] = tuple(pixels.shape), list(captions)
        return real(model, pixels, captions, *args, **kw)

    monkeypatch.setattr(module_file, "denoising_loss", spy)
    quick_trainer(tmp_path, 1).fit(module, datamodule=synthetic_dm(videos=2, frames=4, batch=2))
    assert seen["shape"][:2] == (8, 1)
    assert seen["captions"][:4] == [seen["captions"][0]] * 4 and seen["captions"][4] != seen["captions"][0]


def test_fresh_temporal_starts_another_temporal_module_on_the_same_image_model(tmp_path):
    """`fresh_temporal`: a TDA model's export starts a fixed-attention model (its UNet, temporal layers
    from zero); without it the mismatched temporal weights are refused."""
    import pytest

    source = tiny_module()
    for layer in source.model.unet.temporal_layers:
        torch.nn.init.normal_(layer.to_out.weight, std=0.5)
    source.model.save_pretrained(tmp_path / "tda")
    fixed = {"temporal": {"kind": "temporal_attention"}}
    with pytest.raises(ValueError, match="does not match"):
        tiny_module(init_from=str(tmp_path / "tda"), init_parts=["unet"], model_config=fixed)
    module = tiny_module(init_from=str(tmp_path / "tda"), init_parts=["unet"], model_config=fixed, fresh_temporal=True)
    theirs = source.model.unet.unet.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in module.model.unet.unet.state_dict().items())
    assert all(float(layer.to_out.weight.abs().max()) == 0.0 for layer in module.model.unet.temporal_layers)
    assert type(module.model.unet.temporal_layers[0]).__name__ == "FixedTemporalAttention"
