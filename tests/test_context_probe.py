"""`benchmarks/context_probe.py`: replacing frame 0 moves no other frame when frames are coloured
independently, and moves them once a temporal layer reads the other frames."""

import torch

from lc4.evaluation.synthetic import held_out_video
from tests.test_learning import load_benchmark
from tests.test_temporal_coupling import acting_tiny_model

VIDEO = dict(num_frames=4, size=64, long=True, colors_named="none")


def probe_of(kind: str) -> dict[str, dict[str, float]]:
    video = held_out_video(0, **VIDEO)
    return load_benchmark("context_probe").probe(acting_tiny_model(kind), video, 500, torch.Generator().manual_seed(0))


def test_frame_zero_moves_the_others_only_through_a_temporal_layer():
    independent, tda = probe_of("none"), probe_of("tda")
    assert set(independent) == {"same noise", "clean", "wrong, clean"}
    assert all(row["moved"] < 1e-5 for row in independent.values())  # float rounding only
    assert tda["same noise"]["moved"] == 0.0
    assert tda["clean"]["moved"] > 1e-3 and tda["wrong, clean"]["moved"] > 1e-3
    for rows in (independent, tda):
        for row in rows.values():
            assert 0.0 <= row["true"] <= 1.0 or row["true"] != row["true"]  # an accuracy, or NaN (no scored shape)


def test_layer_probe_sees_frame_zero_in_the_tda_update_of_the_others():
    model = acting_tiny_model("tda")
    video = held_out_video(0, **VIDEO)
    rows = load_benchmark("context_probe").layer_probe(model, video, 500, torch.Generator().manual_seed(0))
    assert len(rows) == len(model.unet.temporal_layers)
    assert rows[0]["frame 0 input moved"] > 0.01 and rows[0]["update moved"] > 1e-3
    assert all(r["update / input"] > 0 for r in rows)


def test_layer_probe_finds_sampling_points_pushed_out_of_the_clip():
    """With zero offsets the TDA points sit on the reference grid (none outside, first slice at t = 0.5
    for 4 frames); offsets driven to +α = 4 frames in time put both slices (4.5, 6.5) past the last
    frame, where eq. 2 reads zeros, and the layers fall silent."""
    model = acting_tiny_model("tda")
    video = held_out_video(0, **VIDEO)
    probe = load_benchmark("context_probe")
    rows = probe.layer_probe(model, video, 500, torch.Generator().manual_seed(0))
    assert all(r["sampled outside"] == 0.0 and abs(r["first slice t"] - 0.5) < 1e-6 for r in rows)
    for layer in model.unet.temporal_layers:
        head = layer.sampler.offset_net[-1]
        torch.nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(torch.tensor([0.0, 0.0, 20.0]))  # tanh → 1: every point α = 4 frames later
    rows = probe.layer_probe(model, video, 500, torch.Generator().manual_seed(0))
    assert all(r["sampled outside"] == 1.0 and abs(r["first slice t"] - 4.5) < 1e-4 for r in rows)
    assert all(r["update / input"] == 0.0 for r in rows)
