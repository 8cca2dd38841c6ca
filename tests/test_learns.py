"""The learning path, end to end through train.py: a tiny model trained from nothing for a few
minutes learns to take a colour from the sentence (slow; runs in CI)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lc4.evaluation.synthetic import evaluate_synthetic, pipeline_colorizer
from lc4.training.stage_configs import derive_stage_config

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
STAGE0_STEPS, STAGE1_STEPS = 400, 500


def train(config: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, str(ROOT / "train.py"), "fit", "--config", str(config)], check=True, cwd=ROOT,
                   env=env, timeout=600, stdout=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_tiny_model_trained_for_minutes_takes_colours_from_the_sentence(tmp_path):
    start = time.time()
    data = {"resolution": SIZE}
    cfg0 = derive_stage_config(ROOT / "configs/demo/stage0.yaml", tmp_path / "s0", steps=STAGE0_STEPS, data=data)
    train(cfg0)
    cfg1 = derive_stage_config(ROOT / "configs/demo/stage1.yaml", tmp_path / "s1", steps=STAGE1_STEPS,
                               init_from=str(tmp_path / "s0" / "export"),
                               data={**data, "num_frames": 2, "synthetic": {"num_videos": 4096, "num_shapes": 1}})
    train(cfg1)
    from lc4.pipeline import LC4Pipeline

    pipe = LC4Pipeline.from_pretrained(tmp_path / "s1" / "export")
    scores = evaluate_synthetic(pipeline_colorizer(pipe, steps=10), videos=8, size=SIZE, num_shapes=(1, 1),
                                swaps=False)
    print(f"trained in {time.time() - start:.0f} s: {scores}")
    # chance is 1/8 for both; the background (most of the frame) is learned first
    assert scores.background_accuracy >= 0.5, scores
