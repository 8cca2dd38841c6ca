"""The shipped demo model (lc4/assets/demo-model): small, the CLI's default, and it follows the sentence."""

from pathlib import Path

import pytest

from lc4.evaluation.synthetic import evaluate_synthetic, held_out_video, pipeline_colorizer

DEMO = Path(__file__).resolve().parents[1] / "lc4" / "assets" / "demo-model"
pytestmark = pytest.mark.skipif(not (DEMO / "model_index.json").is_file(), reason="no demo model is installed")
#: a held-out clip with two shapes of different colours (seed 900 000 + FIXED_CLIP)
FIXED_CLIP = 1


@pytest.fixture(scope="module")
def pipe():
    from lc4.pipeline import LC4Pipeline

    return LC4Pipeline.from_pretrained(DEMO)


def test_demo_model_is_small_and_in_the_save_pretrained_layout():
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    for part in ("vae", "lum_encoder", "unet", "cmpf", "text_encoder", "tokenizer", "scheduler"):
        assert (DEMO / part).is_dir()


def test_demo_model_is_the_cli_default(pipe):
    from lc4.colorize_cli import load_pipeline

    default = load_pipeline("demo", "cpu", "float32", "DDIMScheduler")
    assert default.model.config.to_dict() == pipe.model.config.to_dict()


def test_demo_model_colours_a_held_out_clip_as_its_sentence_says(pipe, one_thread):
    clip = held_out_video(FIXED_CLIP)
    assert clip.num_instances == 2 and clip.instance_colors[0] != clip.instance_colors[1]
    scores = evaluate_synthetic(pipeline_colorizer(pipe, steps=20), videos=1, first=FIXED_CLIP)
    assert scores.instance_accuracy >= 0.8, scores
