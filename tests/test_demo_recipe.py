"""The demo recipe's training aids: a standardised frozen text encoder, high-noise timesteps, fp16 text storage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from lc4.data.synthetic import SyntheticVideoDataset
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.models.text import encode_prompts, standardize_text_encoder
from lc4.models.tokenizer import load_clip_tokenizer
from lc4.training.losses import sample_timesteps
from tests.test_training import quick_trainer, synthetic_dm, tiny_module

CAPTIONS = [SyntheticVideoDataset(40, num_frames=1, size=32).video(i).caption for i in range(40)]


def random_clip(width: int = 32) -> CLIPTextModel:
    torch.manual_seed(0)
    cfg = CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_attention_heads=4,
                         num_hidden_layers=1, projection_dim=width)
    return CLIPTextModel(cfg).eval()


def test_standardised_text_encoder_has_unit_channels_and_is_fp16_exact() -> None:
    tok, te = load_clip_tokenizer(), random_clip()
    before = encode_prompts(te, tok, CAPTIONS).embeddings.reshape(-1, 32)
    assert before.mean(0).abs().max() > 0.2  # a random CLIP's channels are far from standard
    mean, std = standardize_text_encoder(te, tok, CAPTIONS)
    after = encode_prompts(te, tok, CAPTIONS).embeddings.reshape(-1, 32)
    # the affine fold is exact up to the fp16 rounding of the weights
    torch.testing.assert_close(after.mean(0), torch.zeros(32), atol=0.02, rtol=0)
    torch.testing.assert_close(after.std(0), torch.ones(32), atol=0.02, rtol=0)
    torch.testing.assert_close(after, (before - mean) / std, atol=0.02, rtol=0)
    for p in te.parameters():
        assert torch.equal(p, p.half().float())
    with pytest.raises(ValueError, match="at least one prompt"):
        standardize_text_encoder(te, tok, [])


def test_fp16_text_encoder_storage_round_trips_exactly(tmp_path: Path) -> None:
    model = LC4Model.from_config(LC4Config.tiny(), seed=0)
    standardize_text_encoder(model.text_encoder, model.tokenizer, CAPTIONS)
    full = model.save_pretrained(tmp_path / "fp32")
    half = model.save_pretrained(tmp_path / "fp16", text_encoder_dtype=torch.float16)
    size = lambda root: (root / "text_encoder" / "model.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = LC4Model.from_pretrained(half)
    assert loaded.text_encoder.dtype == torch.float32 and model.text_encoder.dtype == torch.float32
    with torch.no_grad():
        a = model.encode_prompt(CAPTIONS[:4]).embeddings
        b = loaded.encode_prompt(CAPTIONS[:4]).embeddings
    assert torch.equal(a, b)


def test_high_noise_fraction_moves_timesteps_to_the_noisy_end() -> None:
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = torch.randint(0, 1000, (4000,), generator=g())
    assert torch.equal(sample_timesteps(4000, 1000, 0.0, g()), plain)  # 0: the paper's uniform draw
    assert sample_timesteps(4000, 1000, 1.0, g()).min() >= 700
    half = sample_timesteps(4000, 1000, 0.5, g())
    assert half.max() < 1000 and half.min() >= 0
    assert 0.6 < (half >= 700).float().mean() < 0.7  # 0.5 + 0.5 * 0.3 expected
    with pytest.raises(ValueError, match="high_noise_fraction"):
        sample_timesteps(4, 1000, 1.5)


def test_module_calibrates_the_frozen_text_encoder_before_training(tmp_path: Path) -> None:
    module = tiny_module(stage=1, calibrate_text_encoder=6, high_noise_fraction=0.5)
    dm = synthetic_dm(videos=6)
    quick_trainer(tmp_path, 1).fit(module, dm)
    captions = [dm.train_dataset.video(i).caption for i in range(6)]
    with torch.no_grad():
        states = module.model.encode_prompt(captions).embeddings.reshape(-1, module.model.text_encoder.config.hidden_size)
    torch.testing.assert_close(states.mean(0), torch.zeros_like(states[0]), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="calibrate_text_encoder"):
        tiny_module(stage=1, calibrate_text_encoder=-1)


def test_fp16_storage_of_every_part_loads_back_in_fp32(tmp_path: Path) -> None:
    """`storage_dtype`: every part on disk in fp16, loaded as fp32 copies of the rounded weights."""
    model = LC4Model.from_config(LC4Config.tiny(lum_features_to_unet=True), seed=0)
    full = model.save_pretrained(tmp_path / "fp32")
    half = model.save_pretrained(tmp_path / "fp16", storage_dtype=torch.float16)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model in memory is untouched
    for part in ("vae", "lum_encoder", "unet", "cmpf", "text_encoder"):
        files = lambda root: sum(f.stat().st_size for f in (root / part).glob("*.safetensors"))  # noqa: E731
        assert files(half) < 0.6 * files(full), part
    loaded = LC4Model.from_pretrained(half)
    for name in ("vae", "lum_encoder", "unet", "cmpf", "text_encoder"):
        saved = dict(getattr(model, name).state_dict())
        for key, value in getattr(loaded, name).state_dict().items():
            assert value.dtype == saved[key].dtype, (name, key)
            assert torch.equal(value, saved[key].half().to(value.dtype)), (name, key)
