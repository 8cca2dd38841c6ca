"""LC4Model: fresh model = SD1.5 parts, zero-init parts learn, save/load, SD1.5 folder loading, errors."""

import json

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel

from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.training.losses import denoising_loss, grey_input, reconstruction_loss

PROMPT = "a red star and a blue circle on a green background"


@pytest.fixture(scope="module")
def tiny() -> LC4Model:
    return LC4Model.from_config(LC4Config.tiny(), seed=0).eval()


def _clip(frames=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, frames, 3, size, size, generator=g) * 2 - 1


def _features(model, clip):
    rgb = clip.flatten(0, 1)
    with torch.no_grad():
        return rgb, model.encode_luminance(grey_input(rgb))


def test_fresh_model_is_exactly_sd15(tiny):
    """UNet + lum injection + TDA, CMPF and decoder skips all start as identity."""
    rgb, lum = _features(tiny, _clip())
    with torch.no_grad():
        text = tiny.encode_prompt([PROMPT])
        assert torch.equal(tiny.fuse_text(text, lum, 4), text.embeddings)  # CMPF: y = 0·y_L + y_0
        z = tiny.encode_frames(rgb, sample=False)
        t = torch.full((4,), 500)
        got = tiny.predict_noise(z, t, text.embeddings, lum, 4)
        plain = tiny.unet.unet(z, t, text.embeddings.repeat(4, 1, 1)).sample
        assert torch.allclose(got, plain, rtol=1e-5, atol=1e-6)
        decoded = tiny.decode(z, lum)
        assert torch.equal(decoded, tiny.vae.decode(z / tiny.vae.config.scaling_factor).sample)


def test_luminance_encoder_starts_as_a_copy_of_the_vae_encoder(tiny):
    for (n1, p1), (n2, p2) in zip(tiny.lum_encoder.encoder.named_parameters(), tiny.vae.encoder.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def _zero_init_params(model: LC4Model):
    out = {"lum_injection": model.unet.lum_injection.weight, "cmpf_out": model.cmpf.out.weight}
    for i, layer in enumerate(model.unet.temporal_layers):
        out[f"tda{i}_out"] = layer.to_out.weight
    return out


def test_one_step_moves_zero_init_parts_then_gradients_reach_lum_tda_offsets_and_cmpf():
    model = LC4Model.from_config(LC4Config.tiny(), seed=1).train()
    model.vae.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    sched = model.noise_scheduler()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    clip = _clip(frames=4, size=32)
    assert all(torch.count_nonzero(p) == 0 for p in _zero_init_params(model).values())

    for step in range(2):
        opt.zero_grad()
        loss = denoising_loss(model, clip, [PROMPT], sched, caption_dropout=0.0, generator=torch.Generator().manual_seed(step))
        assert loss.item() > 0
        loss.backward()
        if step == 1:
            break
        opt.step()
        assert all(torch.count_nonzero(p) > 0 for p in _zero_init_params(model).values())

    def grad_norm(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    assert grad_norm(model.lum_encoder.encoder) > 0  # E^lum, through the injection conv
    for layer in model.unet.temporal_layers:
        # the offset head is zero too: it gets gradient once W_h has moved (now), its body one step later
        assert grad_norm(layer.sampler.offset_net[2]) > 0
    assert grad_norm(model.cmpf.blocks) > 0 and grad_norm(model.cmpf.compress) > 0
    assert all(p.grad is None for p in model.text_encoder.parameters())


def test_stage0_reconstruction_trains_decoder_skips():
    model = LC4Model.from_config(LC4Config.tiny(), seed=2).train()
    model.vae.requires_grad_(False)
    opt = torch.optim.Adam(list(model.lum_encoder.parameters()), lr=1e-3)
    clip = _clip(frames=2, size=32)
    loss = reconstruction_loss(model, clip)
    loss.backward()
    opt.step()
    assert all(torch.count_nonzero(c.weight) > 0 for c in model.lum_encoder.skip_convs)
    with torch.no_grad():
        assert reconstruction_loss(model, clip) != loss


@pytest.mark.parametrize("position_bias", [False, True])
def test_save_pretrained_round_trip_gives_identical_outputs(tiny, tmp_path, position_bias):
    temporal = {"alpha": 2.0, "position_bias": position_bias, "position_bias_sigma": [0.5, 2.0]}
    model = LC4Model.from_config(LC4Config.tiny(temporal=temporal), seed=3).eval()
    for p in list(model.unet.temporal_layers.parameters()) + list(model.cmpf.parameters()):
        torch.nn.init.normal_(p, std=0.05)
    out = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model_index.json", "lc4_config.json", "vae", "lum_encoder", "unet", "cmpf", "text_encoder", "tokenizer", "scheduler"]
    )
    assert list(out.glob("unet/*.safetensors")) and not list(tmp_path.glob(".model*"))
    again = LC4Model.from_pretrained(out).eval()
    assert again.config.temporal.alpha == 2.0
    assert again.config.temporal.position_bias == again.unet.config.tda_position_bias == position_bias
    assert tuple(again.config.temporal.position_bias_sigma) == tuple(again.unet.config.tda_position_bias_sigma) == (0.5, 2.0)
    rgb, lum = _features(model, _clip())
    with torch.no_grad():
        a_text, b_text = model.encode_prompt([PROMPT]), again.encode_prompt([PROMPT])
        assert torch.equal(a_text.embeddings, b_text.embeddings) and torch.equal(a_text.color_mask, b_text.color_mask)
        a = model.fuse_text(a_text, lum, 4)
        assert torch.equal(a, again.fuse_text(b_text, again.encode_luminance(grey_input(rgb)), 4))
        z = model.encode_frames(rgb, sample=False)
        t = torch.full((4,), 321)
        assert torch.equal(model.predict_noise(z, t, a, lum, 4), again.predict_noise(z, t, a, lum, 4))
        assert torch.equal(model.decode(z, lum), again.decode(z, lum))


def _write_sd15_folder(root, seed=0):
    """An SD1.5-layout folder written by diffusers/transformers themselves (tiny shapes, random weights)."""
    cfg = LC4Config.tiny()
    torch.manual_seed(seed)
    UNet2DConditionModel(**cfg.unet).save_pretrained(root / "unet")
    AutoencoderKL(**cfg.vae).save_pretrained(root / "vae")
    from transformers import CLIPTextConfig

    CLIPTextModel(CLIPTextConfig(**cfg.text)).save_pretrained(root / "text_encoder")
    from lc4.models.tokenizer import load_clip_tokenizer

    load_clip_tokenizer(None).save_pretrained(root / "tokenizer")
    DDPMScheduler.from_config(cfg.scheduler).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))


def test_sd15_diffusers_folder_loads_and_reproduces_its_unet(tmp_path):
    _write_sd15_folder(tmp_path)
    model = LC4Model.from_sd15(tmp_path, config=LC4Config.tiny()).eval()
    plain = UNet2DConditionModel.from_pretrained(tmp_path, subfolder="unet").eval()
    rgb, lum = _features(model, _clip())
    with torch.no_grad():
        z = torch.randn(4, 4, 4, 4)
        ctx = torch.randn(1, 77, 32)
        assert torch.allclose(model.predict_noise(z, torch.full((4,), 9), ctx, lum, 4),
                              plain(z, torch.full((4,), 9), ctx.repeat(4, 1, 1)).sample, atol=1e-6)
    for (_, p1), (_, p2) in zip(model.lum_encoder.encoder.named_parameters(), model.vae.encoder.named_parameters()):
        assert torch.equal(p1, p2)
    assert model.config.scheduler["beta_schedule"] == "scaled_linear"


def test_missing_subfolders_are_a_clear_error(tmp_path):
    _write_sd15_folder(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "text_encoder")
    with pytest.raises(FileNotFoundError, match="missing text_encoder/"):
        LC4Model.from_sd15(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        LC4Model.from_sd15(tmp_path / "nope")


def test_not_an_lc4_folder_is_a_clear_error(tmp_path):
    _write_sd15_folder(tmp_path)
    with pytest.raises(ValueError, match="not an L-C4 model folder"):
        LC4Model.from_pretrained(tmp_path)


def test_mismatched_channels_are_clear_errors():
    with pytest.raises(ValueError, match="cross_attention_dim=32 does not match .* hidden_size=48"):
        LC4Config.tiny(text={"hidden_size": 48})
    with pytest.raises(ValueError, match="in_channels=8 does not match .* latent_channels=4"):
        LC4Config.tiny(unet={"in_channels": 8})
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        LC4Config.tiny(colour=1)
    with pytest.raises(ValueError, match="unknown temporal_module 'global'"):
        LC4Model.from_config(LC4Config.tiny(temporal={"kind": "global"}))


@pytest.mark.parametrize("kind", ["temporal_attention", "conv3d", "none"])
def test_ablation_variants_build_and_run(kind):
    model = LC4Model.from_config(LC4Config.tiny(temporal={"kind": kind}, cmpf={"enabled": False}), seed=0).eval()
    assert model.cmpf is None
    rgb, lum = _features(model, _clip(frames=3))
    with torch.no_grad():
        text = model.encode_prompt([PROMPT])
        eps = model.predict_noise(torch.randn(3, 4, 4, 4), torch.full((3,), 5), model.fuse_text(text, lum, 3), lum, 3)
    assert eps.shape == (3, 4, 4, 4)
    assert len(model.unet.temporal_layers) == (0 if kind == "none" else 7)


def test_yaml_model_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "model"
    tiny = LC4Config.from_file(root / "tiny.yaml")
    full = LC4Config.from_file(root / "sd15.yaml")
    assert tiny.unet["block_out_channels"] == [32, 64] and full.unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert full.temporal.alpha == 4.0 and full.num_frames == 8 and full.cmpf.num_blocks == 2


def test_cmpf_trains_alone_on_channels_last_luminance_features():
    """Regression: with E^lum frozen its channels-last features crashed GroupNorm's CPU backward in CMPF."""
    model = LC4Model.from_config(LC4Config.tiny(temporal={"kind": "none"}), seed=0)
    model.requires_grad_(False)
    model.cmpf.requires_grad_(True)
    feats = torch.randn(8, 64, 4, 4).contiguous(memory_format=torch.channels_last)
    model.cmpf.visual_prompt(feats, 4).sum().backward()
    assert model.cmpf.lum_norm.weight.grad is not None


def test_single_file_checkpoint_builds_an_lc4_model_that_reproduces_its_unet(tmp_path):
    """An original-LDM-layout .safetensors (SD1.5 topology, small widths) → LC4Model.from_single_file."""
    from lc4.models.ldm_export import save_sd15_single_file
    from lc4.models.sd15 import config

    unet_cfg = config("sd15_unet")
    unet_cfg.update(block_out_channels=[32, 32, 64, 64], cross_attention_dim=32, norm_num_groups=8, sample_size=8)
    vae_cfg, text_cfg = config("tiny_vae"), config("tiny_text")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_cfg).eval()
    vae = AutoencoderKL(**vae_cfg).eval()
    from transformers import CLIPTextConfig

    text = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()
    path = save_sd15_single_file(tmp_path / "sd15.safetensors", unet, vae, text)
    model = LC4Model.from_single_file(path, LC4Config.tiny(), unet_config=unet_cfg, vae_config=vae_cfg,
                                      text_config=text_cfg).eval()
    assert len(model.unet.temporal_layers) == 16  # SD1.5 topology: 16 transformer blocks
    z, ctx = torch.randn(4, 4, 8, 8), torch.randn(1, 77, 32)
    lum = model.encode_luminance(torch.zeros(4, 3, 64, 64))
    with torch.no_grad():
        got = model.predict_noise(z, torch.full((4,), 7), ctx, lum, 4)
        assert torch.allclose(got, unet(z, torch.full((4,), 7), ctx.repeat(4, 1, 1)).sample, atol=1e-6)
