"""Issue 25, item 9: nonsense model configs, broken JSON and missing or mismatched weights are one clear
error line (ValueError / FileNotFoundError naming the file and field), raised before any weights are
read; valid configs (the shipped demo model, configs/model/*.yaml) keep loading."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lc4.models.lc4 as lc4_module
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model, check_model_folder

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "lc4" / "assets" / "demo-model"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped demo model (the original is never touched)."""
    return Path(shutil.copytree(DEMO, tmp_path / "model"))


@pytest.fixture()
def no_weight_reads(monkeypatch):
    """Fail the test if a part's weights are read: the checks must come first."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("weights were read before the folder was checked")

    monkeypatch.setattr(lc4_module, "_load_part", refuse)


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json writes NaN / Infinity as the tokens Python reads back


# ------------------------------------------------------------------------------- lc4_config.json

BAD_LC4_CONFIG = [
    (lambda c: c["temporal"].update(kind="banana"), r"temporal\.kind: unknown temporal_module 'banana'"),
    (lambda c: c["unet"].update(block_out_channels="64,128"), r"unet\.block_out_channels must be a non-empty list"),
    (lambda c: c["unet"].update(block_out_channels=[64, "wide"]), r"unet\.block_out_channels\[1\] must be an integer"),
    (lambda c: c["unet"].update(down_block_types=["CrossAttnDownBlock2D"]), r"unet\.down_block_types has 1 entries"),
    (lambda c: c["temporal"].update(alpha=float("nan")), r"temporal\.alpha must be a finite number; got nan"),
    (lambda c: c["temporal"].update(alpha=float("inf")), r"temporal\.alpha must be a finite number"),
    (lambda c: c["temporal"].update(spatial_stride=0), r"temporal\.spatial_stride must be >= 1"),
    (lambda c: c["cmpf"].update(heads=0), r"cmpf\.heads must be >= 1; got 0"),
    (lambda c: c["cmpf"].update(heads=-4), r"cmpf\.heads must be >= 1; got -4"),
    (lambda c: c["cmpf"].update(heads="4"), r"cmpf\.heads must be an integer"),
    (lambda c: c["cmpf"].update(alpha=float("nan")), r"cmpf\.alpha must be a finite number"),
    (lambda c: c["cmpf"].update(colour=True), r"unknown cmpf config keys: colour"),
    (lambda c: c.update(temporal="tda"), r"temporal must be a mapping"),
    (lambda c: c.update(num_frames=0), r"num_frames must be >= 1"),
    (lambda c: c["vae"].update(scaling_factor=float("nan")), r"vae\.scaling_factor must be a finite number"),
]


@pytest.mark.parametrize("change,message", BAD_LC4_CONFIG)
def test_nonsense_in_lc4_config_is_one_error_naming_file_and_field(model_dir, no_weight_reads, change, message):
    _edit(model_dir / "lc4_config.json", change)
    with pytest.raises(ValueError, match=message) as info:
        LC4Model.from_pretrained(model_dir)
    text = str(info.value)
    assert str(model_dir / "lc4_config.json") in text and "\n" not in text


BAD_PART_CONFIG = [
    ("unet/config.json", lambda c: c.update(temporal_module="banana"), r"unet\.temporal_module: unknown temporal_module"),
    ("unet/config.json", lambda c: c.update(tda_alpha=float("nan")), r"unet\.tda_alpha must be a finite number"),
    ("unet/config.json", lambda c: c["unet_config"].update(block_out_channels="64,128"),
     r"unet\.unet_config\.block_out_channels must be a non-empty list"),
    ("unet/config.json", lambda c: c.update(lum_channels=0), r"unet\.lum_channels must be >= 1"),
    ("cmpf/config.json", lambda c: c.update(heads=0), r"cmpf\.heads must be >= 1; got 0"),
    ("cmpf/config.json", lambda c: c.update(heads=5), r"cmpf\.heads=5 does not divide cmpf\.text_dim=384"),
    ("vae/config.json", lambda c: c.update(block_out_channels=32), r"vae\.block_out_channels must be a non-empty list"),
    ("lum_encoder/config.json", lambda c: c.update(norm_num_groups=0), r"lum_encoder\.norm_num_groups must be >= 1"),
    ("scheduler/scheduler_config.json", lambda c: c.update(num_train_timesteps=-1),
     r"scheduler\.num_train_timesteps must be >= 1"),
]


@pytest.mark.parametrize("file,change,message", BAD_PART_CONFIG)
def test_nonsense_in_a_part_config_names_that_file(model_dir, no_weight_reads, file, change, message):
    _edit(model_dir / file, change)
    with pytest.raises(ValueError, match=message) as info:
        LC4Model.from_pretrained(model_dir)
    assert str(model_dir / file) in str(info.value)


CONFIG_FILES = ["model_index.json", "lc4_config.json", "unet/config.json", "vae/config.json",
                "lum_encoder/config.json", "cmpf/config.json", "scheduler/scheduler_config.json"]


@pytest.mark.parametrize("file", CONFIG_FILES)
def test_broken_json_in_any_config_file_names_the_file(model_dir, no_weight_reads, file):
    (model_dir / file).write_text('{"unet": {"block_out_channels": [64, 128],')  # cut off mid-write
    with pytest.raises(ValueError, match="is not valid JSON") as info:
        LC4Model.from_pretrained(model_dir)
    assert str(model_dir / file) in str(info.value)


def test_a_config_that_is_not_a_mapping_is_named(model_dir, no_weight_reads):
    (model_dir / "lc4_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"lc4_config\.json must hold a mapping of fields; got list"):
        LC4Model.from_pretrained(model_dir)


@pytest.mark.parametrize("part", ["unet", "vae", "lum_encoder", "cmpf"])
def test_missing_weight_file_is_named_before_anything_loads(model_dir, no_weight_reads, part):
    (model_dir / part / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="weights not found") as info:
        LC4Model.from_pretrained(model_dir)
    assert str(model_dir / part / WEIGHTS) in str(info.value)


def test_missing_part_folder_or_config_is_named(model_dir, no_weight_reads):
    config = model_dir / "unet" / "config.json"
    saved = config.read_text()
    config.unlink()
    with pytest.raises(FileNotFoundError, match=r"unet config not found: .*unet/config\.json"):
        LC4Model.from_pretrained(model_dir)
    config.write_text(saved)
    shutil.rmtree(model_dir / "cmpf")  # lc4_config.json says cmpf.enabled: true
    with pytest.raises(FileNotFoundError, match=r"cmpf/ is missing \(lc4_config\.json has cmpf\.enabled: true\)"):
        check_model_folder(model_dir)


def test_weights_missing_from_a_file_are_an_error_not_meta_tensors(model_dir):
    from safetensors.torch import load_file, save_file

    path = model_dir / "unet" / WEIGHTS
    state = {k: v for k, v in load_file(path).items() if not k.startswith("temporal_layers.")}
    path.unlink()
    save_file(state, path)
    with pytest.raises(ValueError, match=r"does not match .*unet/config\.json: 91 missing \(temporal_layers") as info:
        LC4Model.from_pretrained(model_dir)
    assert str(path) in str(info.value) and "meta" not in str(info.value)


def test_damaged_weight_file_is_named(model_dir):
    path = model_dir / "vae" / WEIGHTS
    path.unlink()
    path.write_bytes(b"\x00not a safetensors file" * 8)
    with pytest.raises(ValueError, match="cannot load vae weights from .*damaged or not a weight file") as info:
        LC4Model.from_pretrained(model_dir)
    assert str(path) in str(info.value)


def test_cli_prints_one_line_for_a_broken_model_folder(model_dir, tmp_path, capsys):
    from lc4.cli import main

    _edit(model_dir / "lc4_config.json", lambda c: c["temporal"].update(alpha=float("nan")))
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 24, 3), 120, np.uint8)).save(grey)
    status = main(["colorize", str(grey), "--prompt", "a red car", "--output", str(tmp_path / "out.png"),
                   "--model", str(model_dir), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("lc4: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "temporal.alpha must be a finite number" in lines[0] and str(model_dir / "lc4_config.json") in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_pipeline_checks_the_scheduler_name_before_loading(model_dir, no_weight_reads):
    from lc4.pipeline import LC4Pipeline

    with pytest.raises(ValueError, match="unknown scheduler 'Banana'"):
        LC4Pipeline.from_pretrained(model_dir, scheduler="Banana")
    with pytest.raises(ValueError, match="unknown torch_dtype 'float8'"):
        LC4Pipeline.from_pretrained(model_dir, torch_dtype="float8")


# ------------------------------------------------------------------------------- valid configs


def test_the_shipped_demo_model_still_checks_and_loads():
    config = check_model_folder(DEMO)
    assert config.temporal.kind == "tda" and config.cmpf.heads == 4
    model = LC4Model.from_pretrained(DEMO)
    assert not any(p.is_meta for p in model.parameters())


def test_every_shipped_yaml_model_config_is_valid():
    files = sorted((ROOT / "configs" / "model").glob("*.yaml"))
    assert files
    for path in files:
        LC4Config.from_file(path)


def test_python_configs_reject_nonsense_too():
    with pytest.raises(ValueError, match=r"cmpf\.heads must be >= 1; got 0"):
        LC4Config.tiny(cmpf={"heads": 0})
    with pytest.raises(ValueError, match=r"temporal\.alpha must be a finite number"):
        LC4Config.tiny(temporal={"alpha": math.nan})
    with pytest.raises(ValueError, match=r"unknown temporal config keys: stride"):
        LC4Config.tiny(temporal={"stride": 2})
    with pytest.raises(ValueError, match=r"unet must be a mapping"):
        LC4Config.tiny(unet=[1, 2])


def test_broken_yaml_model_file_is_named(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("base: tiny\ntemporal: {kind: tda\n")
    with pytest.raises(ValueError, match=r"m\.yaml is not valid YAML"):
        LC4Config.from_file(path)
    path.write_text("base: tiny\ncmpf: {heads: 0}\n")
    with pytest.raises(ValueError, match=r"model config .*m\.yaml: cmpf\.heads must be >= 1"):
        LC4Config.from_file(path)


def test_modules_reject_nan_alpha_and_bad_strides():
    from lc4.models.sd15 import config
    from lc4.models.tda import DeformableSampler
    from lc4.models.unet import LC4UNet

    with pytest.raises(ValueError, match="alpha must be a finite number"):
        DeformableSampler(dim=8, alpha=float("nan"))
    with pytest.raises(ValueError, match="spatial_stride must be an integer >= 1"):
        DeformableSampler(dim=8, spatial_stride=0)
    with pytest.raises(ValueError, match=r"LC4UNet\.tda_alpha must be a finite number"):
        LC4UNet(unet_config=config("tiny_unet"), tda_alpha=float("nan"))
    with pytest.raises(ValueError, match=r"LC4UNet\.unet_config\.block_out_channels"):
        LC4UNet(unet_config={**config("tiny_unet"), "block_out_channels": "32,64"})
