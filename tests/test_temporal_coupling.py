"""`benchmarks/temporal_coupling.py`: the cross-frame gradient is exactly zero when frames are
coloured independently and positive once a temporal layer reads the other frames."""

import torch

from lc4.data.synthetic import to_pixel_values
from lc4.evaluation.synthetic import held_out_video
from lc4.models.config import LC4Config
from lc4.models.lc4 import LC4Model
from tests.test_learning import load_benchmark


def acting_tiny_model(kind: str = "tda") -> LC4Model:
    """A tiny random model whose temporal layers (of `kind`) have left their zero start, so they act."""
    config = LC4Config.tiny()
    config.temporal.kind = kind
    model = LC4Model.from_config(config, seed=0).eval()
    for layer in model.unet.temporal_layers:
        torch.nn.init.normal_(layer.to_out.weight, std=0.5)
    return model


def coupling_of(kind: str) -> float:
    model = acting_tiny_model(kind)
    video = held_out_video(0, num_frames=4, colors_named="some")
    rgb = to_pixel_values(video.rgb)
    return load_benchmark("temporal_coupling").coupling(model, rgb, video.caption, 600, 1, seed=0)


def test_coupling_is_zero_for_independent_frames_and_positive_with_tda():
    assert coupling_of("none") == 0.0
    assert coupling_of("tda") > 1e-3
