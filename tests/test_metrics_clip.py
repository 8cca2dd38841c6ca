"""CLIP score with a tiny random transformers CLIPModel saved to disk with save_pretrained."""

import json
import string

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from lc4.metrics import CLIPScorer, clip_score
from lc4.metrics.clip_score import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,'":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    torch.manual_seed(0)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    return folder


def _reference_scores(folder, video, prompt):
    """Cosine × 100 from the model's own feature functions, 32×32 frames need no resizing."""
    model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    pixels = (torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        t = model.get_text_features(**tok([prompt], return_tensors="pt"))
        i = model.get_image_features(pixel_values=pixels)
    t = t if isinstance(t, torch.Tensor) else t.pooler_output
    i = i if isinstance(i, torch.Tensor) else i.pooler_output
    cos = torch.nn.functional.cosine_similarity(i, t, dim=-1)
    return (100 * cos.clamp(min=0)).numpy()


def test_matches_direct_model_computation(clip_dir):
    video = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    scorer = CLIPScorer.from_pretrained(clip_dir)
    ours = scorer.score_per_frame(video, "a red car")
    np.testing.assert_allclose(ours, _reference_scores(clip_dir, video, "a red car"), atol=1e-4)
    assert np.all((ours >= 0) & (ours <= 100))
    assert clip_score(video, "a red car", scorer) == pytest.approx(float(ours.mean()), abs=1e-9)


def test_repeated_frames_and_non_square_input(clip_dir):
    scorer = CLIPScorer.from_pretrained(clip_dir)
    frame = np.random.default_rng(1).integers(0, 256, (1, 40, 64, 3), dtype=np.uint8)
    assert scorer.preprocess(frame).shape == (1, 3, 32, 32)
    scores = scorer.score_per_frame(np.repeat(frame, 3, axis=0), "a dog")
    assert np.allclose(scores, scores[0], atol=1e-5)


def test_preprocessor_config_is_used(clip_dir, tmp_path):
    for f in clip_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    )
    scorer = CLIPScorer.from_pretrained(tmp_path)
    assert scorer.image_size == 40 and scorer.crop_size == 32
    assert torch.allclose(scorer.mean, torch.full((1, 3, 1, 1), 0.5))


def test_errors(clip_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="CLIP"):
        CLIPScorer.from_pretrained(tmp_path / "missing")
    scorer = CLIPScorer.from_pretrained(clip_dir)
    with pytest.raises(ValueError, match="prompt"):
        scorer.score_per_frame(np.zeros((1, 32, 32, 3), np.uint8), "  ")
    with pytest.raises(ValueError, match="model_path"):
        clip_score(np.zeros((1, 32, 32, 3), np.uint8), "a cat")
