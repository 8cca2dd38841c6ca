"""Training objectives for models trained from scratch (v-prediction, latent scale) and the
held-out benchmark scorer that decides whether a model learned to follow the sentence."""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lc4.data.synthetic import generate_video, swap_caption_colors
from lc4.evaluation.synthetic import HELD_OUT_SEED, evaluate_synthetic, held_out_video, reconstruction_scores
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.training.losses import denoising_loss, latent_scale, prediction_target

ROOT = Path(__file__).resolve().parents[1]


def demo_config() -> LC4Config:
    return LC4Config.from_file(ROOT / "configs/model/demo.yaml")


def test_demo_config_uses_v_prediction_on_zero_terminal_snr():
    sched = LC4Model.from_config(demo_config(), seed=0).noise_scheduler("DDPMScheduler")
    assert sched.config.prediction_type == "v_prediction"
    assert float(sched.alphas_cumprod[-1]) < 1e-6  # no training colour leaks through t = T
    assert LC4Model.from_config(demo_config(), seed=0).vae_scale_factor == 4


def test_v_target_lets_the_scheduler_recover_the_clean_latents():
    """A model that outputs the training target exactly makes DDIM's x̂₀ equal the clean latents."""
    model = LC4Model.from_config(demo_config(), seed=0)
    train = model.noise_scheduler("DDPMScheduler")
    ddim = model.noise_scheduler("DDIMScheduler")
    ddim.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t in ddim.timesteps[:3]:
        tt = torch.full((2,), int(t))
        zt = train.add_noise(z0, noise, tt)
        target = prediction_target(train, z0, noise, tt)
        out = ddim.step(target, int(t), zt)
        torch.testing.assert_close(out.pred_original_sample, z0, atol=1e-4, rtol=1e-4)


def test_epsilon_target_is_the_noise_and_unknown_kinds_are_refused():
    sched = LC4Model.from_config(LC4Config.tiny(), seed=0).noise_scheduler("DDPMScheduler")
    z0, noise, t = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4), torch.tensor([10])
    assert torch.equal(prediction_target(sched, z0, noise, t), noise)
    sched.register_to_config(prediction_type="sample_x")
    with pytest.raises(ValueError, match="prediction_type"):
        prediction_target(sched, z0, noise, t)


def test_denoising_loss_trains_the_v_target():
    torch.manual_seed(0)
    model = LC4Model.from_config(demo_config(), seed=0)
    pixels = torch.rand(1, 2, 3, 32, 32) * 2 - 1
    loss = denoising_loss(model, pixels, ["a red star on a navy background"], model.noise_scheduler("DDPMScheduler"),
                          generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())


def test_latent_scale_gives_unit_variance_latents():
    model = LC4Model.from_config(LC4Config.tiny(), seed=0)
    g = torch.Generator().manual_seed(0)
    batches = [{"pixel_values": torch.rand(2, 2, 3, 32, 32, generator=g) * 2 - 1} for _ in range(3)]
    scale = latent_scale(model, batches)
    torch.manual_seed(1)
    z = torch.cat([model.vae.encode(b["pixel_values"].flatten(0, 1)).latent_dist.sample() for b in batches])
    assert abs(float((z * scale).std().detach()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="at least one batch"):
        latent_scale(model, [])


# ----------------------------------------------------------------- the scorer
def oracle_and_grey(videos: int):
    """A colorizer that knows the answer for every caption (original and swapped), and one that never colours."""
    answers = {}
    for k in range(videos):
        v = held_out_video(k)
        answers[v.caption] = v.rgb
        if v.num_instances >= 2 and v.instance_colors[0] != v.instance_colors[1]:
            caption, expected = swap_caption_colors(v, 0, 1)
            answers[caption] = generate_video(HELD_OUT_SEED + k, 8, 64, (1, 2), instance_colors=expected,
                                              background_color=v.background_color).rgb
    return (lambda grey, caption: answers[caption]), (lambda grey, caption: grey)


def test_scorer_gives_the_oracle_full_marks_and_grey_nothing():
    oracle, grey = oracle_and_grey(6)
    perfect = evaluate_synthetic(oracle, 6)
    assert perfect.instance_accuracy == 1.0 and perfect.swap_count >= 1 and perfect.swap_followed == 1.0
    assert perfect.psnr > 40 and perfect.hue_spread_deg < 5 and perfect.background_accuracy == 1.0
    assert perfect.accuracy_by_shape_count == {"1": 1.0, "2": 1.0}
    flat = evaluate_synthetic(grey, 6)
    assert flat.instance_accuracy <= 0.35 and flat.swap_followed == 0.0 and flat.background_accuracy <= 0.35


def test_scorer_catches_a_model_that_ignores_the_sentence():
    """Always painting the original colours scores 1.0 on accuracy but follows no swap."""
    oracle, _ = oracle_and_grey(6)
    originals = {held_out_video(k).caption: held_out_video(k).rgb for k in range(6)}
    ignores = {}
    for k in range(6):
        v = held_out_video(k)
        ignores[v.caption] = v.rgb
        if v.num_instances >= 2 and v.instance_colors[0] != v.instance_colors[1]:
            ignores[swap_caption_colors(v, 0, 1)[0]] = v.rgb
    scores = evaluate_synthetic(lambda grey, caption: ignores[caption], 6)
    assert scores.instance_accuracy == 1.0 and scores.swap_followed == 0.0
    assert set(originals) <= set(ignores)


def test_accuracy_is_split_by_shape_count():
    """A colorizer right on one-shape videos and grey on two-shape ones: 1.0 and (near) chance."""
    oracle, grey = oracle_and_grey(6)
    counts = {held_out_video(k).caption: held_out_video(k).num_instances for k in range(6)}

    def one_shape_only(frames, caption):
        return oracle(frames, caption) if counts.get(caption) == 1 else grey(frames, caption)

    scores = evaluate_synthetic(one_shape_only, 6, swaps=False)
    assert scores.accuracy_by_shape_count["1"] == 1.0 and scores.accuracy_by_shape_count["2"] <= 0.35
    pooled = [scores.accuracy_by_shape_count[k] for k in ("1", "2")]
    assert min(pooled) < scores.instance_accuracy < max(pooled)


def test_reconstruction_scores_of_an_untrained_vae_are_poor():
    model = LC4Model.from_config(demo_config(), seed=0).eval()
    scores = reconstruction_scores(model, videos=2, num_frames=2)
    assert 0.0 <= scores["instance_accuracy"] < 0.6 and scores["psnr"] < 25


# ----------------------------------------------------------- ablation report
def load_benchmark(name: str = "ablations"):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_ablations():
    return load_benchmark("ablations")


def test_text_binding_probe_finds_the_words_and_separates_only_what_is_there():
    probe = load_benchmark("text_binding_probe")
    data = probe.two_shape_captions(3, seed=1)
    assert all(len(set(shapes)) == 2 and all(f"{c} {s}" in cap for s, c in zip(shapes, colours))
               for shapes, colours, cap in data)
    offsets = [(0, 0), (0, 1), (2, 5), (6, 8), (8, 12), (0, 0)]  # "a red hexa|gon": sub-tokens 3, 4
    assert probe.last_token_of(offsets, 6, 12) == 4 and probe.last_token_of(offsets, 2, 5) == 2
    with pytest.raises(ValueError, match="no token"):
        probe.last_token_of(offsets, 13, 20)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=gen)
    informative = torch.nn.functional.one_hot(y, 4).float() * 3 + torch.randn(400, 4, generator=gen)
    assert probe.probe_accuracy(informative, y) > 0.9
    assert probe.probe_accuracy(torch.randn(400, 4, generator=gen), y) < 0.45  # chance is 0.25


def test_binding_errors_sorts_each_outcome():
    bench = load_benchmark("binding_errors")
    blend = bench.blend_colour("red", "yellow")
    assert blend not in ("red", "yellow")  # between red and yellow on the hue circle lies another name
    assert bench.blend_colour("blue", "blue") == "blue"
    cases = {"red": "own", "yellow": "other", blend: "blend", "cyan": "elsewhere", None: None}
    assert {p: bench.classify(p, "red", "yellow", blend) for p in cases} == cases


def test_binding_positions_tell_bound_from_order_blind_and_inverted_colours():
    bench = load_benchmark("binding_errors")
    assert bench.segment_position(np.array([[10.0, 0.0], [5.0, 5.0]]), np.zeros(2), np.array([10.0, 0.0])).tolist() == [1.0, 0.5]
    renders: dict[str, dict[str, np.ndarray]] = {}  # caption -> {"right", "swapped"} renders of its video
    for k in range(8):
        video = held_out_video(k)
        if video.num_instances == 2:
            caption, colours = swap_caption_colors(video, 0, 1)
            other = generate_video(HELD_OUT_SEED + k, num_frames=8, size=64, num_shapes=(1, 2), instance_colors=colours).rgb
            renders[video.caption] = {"right": video.rgb, "swapped": other}
            renders[caption] = {"right": other, "swapped": video.rgb}
    bound = bench.binding_positions(lambda grey, caption: renders[caption]["right"], 8)
    inverted = bench.binding_positions(lambda grey, caption: renders[caption]["swapped"], 8)
    first = {caption: r["right"] for caption, r in list(renders.items())[::2]}  # one render per video
    blind = bench.binding_positions(lambda grey, caption: first.get(caption, renders[caption]["swapped"]), 8)
    assert bound["shape_frames"] > 0
    assert abs(bound["position"]) < 0.15 and abs(bound["swap_reach"] - 1) < 0.15
    assert abs(inverted["position"] - 1) < 0.15 and abs(inverted["swap_reach"] + 1) < 0.15
    assert abs(blind["position"]) < 0.15 and abs(blind["swap_reach"]) < 1e-9


def test_shape_probe_crops_a_centred_zero_padded_window():
    probe = load_benchmark("shape_recognition_probe")
    feature = torch.arange(16.0).reshape(1, 4, 4)  # a 4×4 map of a 64-px frame: 16 px per cell
    window = probe.crop(feature, cy=40.0, cx=40.0, size=64, radius=1).reshape(3, 3)
    assert window[1, 1] == feature[0, 2, 2] and window[0, 0] == feature[0, 1, 1]
    corner = probe.crop(feature, cy=0.0, cx=0.0, size=64, radius=1).reshape(3, 3)
    assert corner[0].abs().sum() == 0 and corner[1, 1] == 0.0 and corner[2, 2] == feature[0, 1, 1]


def test_ablation_report_replaces_only_its_block(tmp_path):
    ab = load_ablations()
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\nintro\n{ab.BEGIN}\nold table\n{ab.END}\n\noutro\n")
    ab.write_docs("| new |", doc)
    text = doc.read_text()
    assert "old table" not in text and "| new |" in text and text.startswith("# Results\n\nintro")
    assert text.rstrip().endswith("outro")


def test_ablation_video_stage_configs_keep_the_budget_and_change_only_the_variant(tmp_path):
    import yaml

    ab = load_ablations()
    recipe = yaml.safe_load((ROOT / "configs/demo/lc4_stage1_video.yaml").read_text())
    configs = {name: yaml.safe_load(ab.stage_config(tmp_path / name, 123, name, "image", seed=3).read_text())
               for name in ab.TRAINED}
    for name, cfg in configs.items():
        assert cfg["trainer"]["max_steps"] == 123 and cfg["model"]["init_from"] == "image"
        assert cfg["seed_everything"] == 3 and cfg["trainer"]["default_root_dir"] == str(tmp_path / name)
        assert cfg["data"] == recipe["data"] and cfg["model"]["lr"] == recipe["model"]["lr"]
        assert cfg["model"]["init_parts"] == recipe["model"]["init_parts"]
    assert "model_config" not in configs["full"]["model"] and configs["full"]["model"]["use_cmpf"] is True
    assert configs["no_tda"]["model"]["model_config"] == {"temporal": {"kind": "temporal_attention"}}
    assert configs["no_temporal"]["model"]["model_config"] == {"temporal": {"kind": "none"}}
    assert configs["no_cmpf"]["model"]["use_cmpf"] is False and configs["no_cmpf"]["model"]["train_parts"] == ["unet"]
    base = yaml.safe_load((ROOT / "configs/demo/lc4_stage1_video.yaml").read_text())  # a stage with its own model_config
    base["model"]["model_config"] = {"temporal": {"kind": "tda", "padding": "border"}, "num_frames": 8}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    derived = {name: yaml.safe_load(ab.stage_config(tmp_path / f"b_{name}", 5, name, "image", base=tmp_path / "base.yaml")
                                    .read_text())["model"]["model_config"] for name in ab.TRAINED}
    assert derived["full"] == base["model"]["model_config"]
    assert derived["no_tda"] == {"temporal": {"kind": "temporal_attention", "padding": "border"}, "num_frames": 8}
    assert derived["no_cmpf"] == {**base["model"]["model_config"], "cmpf": {"enabled": False}}
    args = argparse.Namespace(out=str(tmp_path / "abl"), full="recipe")
    assert ab.model_folder("full", 0, args) == Path("recipe")
    assert ab.model_folder("full", 1, args) == tmp_path / "abl/seed1/full/export"
    assert ab.model_folder("no_tda", 0, args) == tmp_path / "abl/seed0/no_tda/export"


def test_ablation_table_pools_training_seeds():
    ab = load_ablations()

    def run(acc, followed, count, flip):
        named = {"instance_accuracy": acc, "swap_followed": followed, "swap_count": count, "cdc_x1000": 50.0,
                 "psnr": 28.0, "accuracy_by_shape_count": {"1": acc + 0.2, "2": acc - 0.2}}
        free = {"flip_rate_clip": flip, "commitment": 0.5}
        long = {"flip_rate_clip": flip, "flip_rate_video": 2 * flip, "seam_change_rate": flip, "commitment": 0.4}
        return {"named": named, "free": free, "long": long}

    args = argparse.Namespace(long_frames=128)
    two = ab.table({"full": [run(0.4, 0.5, 4, 0.1), run(0.6, 0.25, 4, 0.3)]}, args).splitlines()[-1]
    assert "| 2 |" in two and "0.50 ± 0.10" in two and "| 3/8 |" in two  # seed spread, pooled swaps
    assert "| 0.70 ± 0.10 / 0.30 ± 0.10 |" in two and "| 0.40 ± 0.20 |" in two  # flip over the long video
    inference = ab.table({"clip_by_clip": [dict(run(0.4, 0.5, 4, 0.2), named=None, free=None)]}, args)
    assert "(as full)" in inference.splitlines()[-1] and "| 0.40 |" in inference.splitlines()[-1]


def test_training_seed_draws_the_random_start(tmp_path):
    from lc4.training.module import build_model

    a, b = build_model("tiny", seed=0), build_model("tiny", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), build_model("tiny").state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.unet.state_dict().values(), b.unet.state_dict().values()))


def test_init_from_a_folder_carries_the_latent_scale_and_init_parts_limits_the_copy(tmp_path):
    from lc4.training.module import load_weights_from

    trained = LC4Model.from_config(LC4Config.tiny(), seed=1)
    trained.set_latent_scale(0.5)
    trained.save_pretrained(tmp_path / "stage0")
    fresh = LC4Model.from_config(LC4Config.tiny(), seed=2)
    unet_before = {k: v.clone() for k, v in fresh.unet.state_dict().items()}
    assert load_weights_from(fresh, str(tmp_path / "stage0"), ["vae", "lum_encoder"]) == ["vae", "lum_encoder"]
    assert fresh.vae.config.scaling_factor == 0.5 and fresh.config.vae["scaling_factor"] == 0.5
    for k, v in trained.vae.state_dict().items():
        assert torch.equal(fresh.vae.state_dict()[k], v)
    assert all(torch.equal(fresh.unet.state_dict()[k], v) for k, v in unet_before.items())
    with pytest.raises(ValueError, match="unknown init_parts"):
        load_weights_from(fresh, str(tmp_path / "stage0"), ["vea"])


def test_text_probe_predicts_clean_latents_of_the_clip_shape():
    probe = importlib.util.spec_from_file_location("text_probe", ROOT / "benchmarks/text_probe.py")
    module = importlib.util.module_from_spec(probe)
    probe.loader.exec_module(module)
    model = LC4Model.from_config(demo_config(), seed=0).eval()
    grey = held_out_video(0, num_frames=2).grey
    a = module.one_step_x0(model, grey, "a red circle on a navy background")
    b = module.one_step_x0(model, grey, "a red circle on a navy background")
    assert a.shape == (2, 4, 16, 16) and torch.isfinite(a).all() and torch.equal(a, b)  # seeded noise


# ----------------------------------------------------------- shape-weighted loss
def test_weighted_mse_is_the_plain_mean_under_uniform_weights_and_checks_shapes():
    from lc4.training.losses import weighted_mse

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    torch.testing.assert_close(weighted_mse(pred, target, torch.full((3, 1, 5, 5), 2.5)),
                               torch.nn.functional.mse_loss(pred, target))
    w = torch.zeros(3, 1, 5, 5)
    w[1, :, 2, 3] = 1.0  # all the weight on one pixel: its error over the channels
    torch.testing.assert_close(weighted_mse(pred, target, w), ((pred - target)[1, :, 2, 3] ** 2).mean())
    with pytest.raises(ValueError, match="does not match"):
        weighted_mse(pred, target, torch.ones(3, 1, 4, 4))


def test_shape_weighted_denoising_loss_weights_the_shapes_pixels():
    """Weight 1 (or no mask) is the paper's loss; weight w is Σ w·e / Σ w with the mask area-pooled
    to the latent grid, checked against the per-pixel errors of the same draw."""
    from lc4.data.synthetic import SyntheticVideoDataset

    model = LC4Model.from_config(demo_config(), seed=0)
    sched = model.noise_scheduler("DDPMScheduler")
    ds = SyntheticVideoDataset(2, num_frames=2, size=32, num_shapes=(2, 2), with_masks=True)
    items = [ds[i] for i in range(2)]
    pixels = torch.stack([it["pixel_values"] for it in items])
    mask = torch.stack([it["shape_mask"] for it in items])
    assert mask.shape == (2, 2, 32, 32) and 0 < float(mask.mean()) < 0.5
    assert torch.equal(mask[0].bool(), torch.from_numpy(ds.video(0).masks.any(axis=1)))
    assert "shape_mask" not in SyntheticVideoDataset(1, num_frames=2, size=32)[0]

    def loss(**kw):
        return denoising_loss(model, pixels, [it["caption"] for it in items], sched, caption_dropout=0.0,
                              generator=torch.Generator().manual_seed(3), **kw)

    with torch.no_grad():
        plain, same = loss(), loss(shape_mask=mask, shape_weight=1.0)
        weighted = loss(shape_mask=mask, shape_weight=9.0)
        on_shapes = loss(shape_mask=mask, shape_weight=1e6)  # ≈ the error on the shapes alone
        flat = loss(shape_mask=torch.ones_like(mask), shape_weight=9.0)
    assert torch.equal(plain, same)
    torch.testing.assert_close(flat, plain)
    assert not torch.allclose(weighted, plain)
    # the weighted loss lies between the background-dominated mean and the shapes' own error
    assert min(plain, on_shapes) < weighted < max(plain, on_shapes)


# ------------------------------------------------------------------ colour twins
def test_colour_twins_keep_the_grey_clip_and_change_only_the_named_colours():
    from lc4.data.synthetic import SyntheticVideoDataset, twin_colors

    ds = SyntheticVideoDataset(12, num_frames=2, size=32, num_shapes=(1, 2), twins=True)
    kinds = set()
    for i in range(len(ds)):
        v, t, item = ds.video(i), ds.twin(i), ds[i]
        assert np.array_equal(v.grey, t.grey) and np.array_equal(v.masks, t.masks)  # isoluminant palette
        assert t.shapes == v.shapes and t.background_color == v.background_color
        if v.num_instances == 2:
            assert t.instance_colors == v.instance_colors[::-1]
        else:
            assert t.instance_colors != v.instance_colors
        assert twin_colors(v) == t.instance_colors  # deterministic
        assert item["twin_caption"] == t.caption != item["caption"]
        assert torch.equal(item["twin_pixel_values"], torch.from_numpy(t.rgb).permute(0, 3, 1, 2).float() / 127.5 - 1)
        kinds.add(v.num_instances)
    assert kinds == {1, 2}
    assert "twin_caption" not in SyntheticVideoDataset(1, num_frames=2, size=32)[0]


def test_paired_loss_gives_twins_the_same_noise_timestep_and_dropout(monkeypatch):
    model = LC4Model.from_config(demo_config(), seed=0)
    sched = model.noise_scheduler("DDPMScheduler")
    seen = {}
    add_noise = sched.add_noise

    def spy(latents, noise, t):
        seen["noise"], seen["t"] = noise, t
        return add_noise(latents, noise, t)

    monkeypatch.setattr(sched, "add_noise", spy)
    pixels = torch.rand(4, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    captions = ["a red star on a navy background"] * 2 + ["a blue star on a navy background"] * 2
    with torch.no_grad():
        denoising_loss(model, pixels, captions, sched, generator=torch.Generator().manual_seed(1), paired=True)
    n = seen["noise"]
    assert torch.equal(n[:4], n[4:]) and torch.equal(seen["t"][:4], seen["t"][4:])
    with torch.no_grad():
        denoising_loss(model, pixels, captions, sched, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(seen["noise"][:4], seen["noise"][4:])
    from lc4.training.losses import drop_captions
    for seed in range(20):  # a pair is dropped together or kept together
        out = drop_captions(captions, 0.5, torch.Generator().manual_seed(seed), paired=True)
        assert [c == "" for c in out[:2]] == [c == "" for c in out[2:]]
    with pytest.raises(ValueError, match="even number"):
        denoising_loss(model, pixels[:3], captions[:3], sched, paired=True)
