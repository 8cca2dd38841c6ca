"""Tests of the procedural language-colorization benchmark and the instance colour metrics."""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from functools import lru_cache

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.stats import circstd
from skimage.color import lab2rgb, lab2xyz, rgb2lab

from lc4.color import XYZ_FROM_RGB, to_grey
from lc4.data.synthetic import (
    BACKGROUND_L,
    BACKGROUND_PALETTE,
    CAPTION_TEMPLATES,
    MAX_TEXTURE_AMPLITUDE,
    SHAPE_L,
    SHAPE_PALETTE,
    Palette,
    SyntheticVideoDataset,
    caption_with_colors,
    generate_video,
    load_masks,
    read_meta,
    swap_caption_colors,
    write_dataset,
)
from lc4.data.synthetic.luminance import lock_grey
from lc4.data.synthetic.shapes import RING_INNER, Pose, coverage, inside, polygon_vertices
from lc4.data.synthetic_cli import add_parser
from lc4.metrics.instance import hue_spread, instance_color_accuracy

SEEDS = range(24)


@lru_cache(maxsize=None)
def video(seed: int, **kwargs):
    return generate_video(seed, **kwargs)


def _recoloured(seed: int):
    """The same video with every instance and the background given colours it did not have."""
    v = video(seed)
    new = [c for c in SHAPE_PALETTE.names if c not in v.instance_colors][: v.num_instances]
    bg = next(c for c in BACKGROUND_PALETTE.names if c != v.background_color)
    return generate_video(seed, instance_colors=new, background_color=bg)


# ----------------------------------------------------------------------------- palette


def _linear_rgb_unclipped(lab: np.ndarray) -> np.ndarray:
    """Lab -> linear sRGB without clipping (an independent path: skimage's XYZ, inverse matrix)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xyz = lab2xyz(np.asarray(lab, dtype=np.float64).reshape(-1, 1, 3)).reshape(-1, 3)
    return xyz @ np.linalg.inv(XYZ_FROM_RGB).T


@pytest.mark.parametrize("palette, L", [(SHAPE_PALETTE, SHAPE_L), (BACKGROUND_PALETTE, BACKGROUND_L)])
def test_palettes_are_isoluminant_distinct_and_in_gamut(palette, L):
    assert len(palette) >= 8
    lab = rgb2lab(palette.rgb[None].astype(np.float64) / 255.0)[0]  # from the 8-bit values themselves
    np.testing.assert_allclose(lab, palette.lab, atol=1e-6)
    assert np.abs(lab[:, 0] - L).max() <= 0.1
    chromatic = lab[np.hypot(lab[:, 1], lab[:, 2]) > 5]
    dists = np.linalg.norm(chromatic[:, None, 1:] - chromatic[None, :, 1:], axis=-1)
    assert dists[~np.eye(len(chromatic), dtype=bool)].min() > 12  # hues far apart in ab
    # Every 8-bit colour maps to the same 8-bit grey: the grey video cannot tell them apart.
    assert len(np.unique(to_grey(palette.rgb[None])[0])) == 1
    # In gamut, with the background's texture range included.
    spread = [0.0] if palette is SHAPE_PALETTE else [-MAX_TEXTURE_AMPLITUDE, 0.0, MAX_TEXTURE_AMPLITUDE]
    for dl in spread:
        lin = _linear_rgb_unclipped(lab + [dl, 0.0, 0.0])
        assert lin.min() >= -1e-6 and lin.max() <= 1 + 1e-6


def test_shapes_and_background_lightness_differ():
    assert abs(SHAPE_L - BACKGROUND_L) - 2 * MAX_TEXTURE_AMPLITUDE >= 10


def test_palette_rejects_bad_definitions():
    with pytest.raises(ValueError, match="unique"):
        Palette((SHAPE_PALETTE.colors[0], SHAPE_PALETTE.colors[0]))
    with pytest.raises(ValueError, match="limit 0.5"):
        Palette(SHAPE_PALETTE.colors, lightness=50.0)
    with pytest.raises(ValueError, match="gamut"):
        Palette.from_mapping({"impossible": (60.0, 0.0, -120.0)})
    custom = Palette.from_mapping({"x": (50.0, 30.0, 0.0), "y": (50.2, -30.0, 0.0)})
    assert custom.lightness == pytest.approx(50.1)
    assert Palette.from_mapping({"x": (50.0, 30.0, 0.0), "y": (70.0, -30.0, 0.0)}).lightness is None


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", ["square", "triangle", "star", "cross", "hexagon"])
def test_polygon_inside_matches_matplotlib_point_in_polygon(shape):
    pts = np.random.default_rng(0).uniform(-1.1, 1.1, size=(20000, 2))
    ours = inside(shape, pts[:, 0], pts[:, 1])
    ref = MplPath(polygon_vertices(shape)).contains_points(pts)
    assert (ours != ref).mean() < 1e-3  # only points on the outline may disagree


@pytest.mark.parametrize(
    "shape, area",
    [
        ("circle", np.pi),
        ("ring", np.pi * (1 - RING_INNER**2)),
        ("square", 2 * 0.95**2),
        ("hexagon", 1.5 * np.sqrt(3) * 0.9**2),
    ],
)
def test_coverage_area_is_analytic_area(shape, area):
    r = 20.0
    cov = coverage(shape, Pose(32.3, 31.7, r, angle=0.3), 64, 64, supersample=4)
    assert cov.min() >= 0 and cov.max() <= 1
    assert cov.sum() == pytest.approx(area * r * r, rel=0.01)
    # Shear keeps area (det = 1); rotation too.
    sheared = coverage(shape, Pose(32.3, 31.7, r, angle=1.1, shear=0.3), 64, 64, supersample=4)
    assert sheared.sum() == pytest.approx(area * r * r, rel=0.015)


def test_coverage_clips_at_frame_edges():
    assert coverage("circle", Pose(-30.0, 10.0, 8.0), 32, 32).sum() == 0
    half = coverage("circle", Pose(0.0, 16.0, 8.0), 32, 32).sum()
    assert half == pytest.approx(np.pi * 64 / 2, rel=0.02)


def test_unknown_shape_is_rejected():
    with pytest.raises(ValueError, match="unknown shape"):
        inside("heart", np.zeros(1), np.zeros(1))


# ----------------------------------------------------------------------------- videos


def test_video_fields_and_determinism():
    v = video(5)
    T, n = 8, v.num_instances
    assert v.rgb.shape == v.grey.shape == (T, 64, 64, 3) and v.rgb.dtype == v.grey.dtype == np.uint8
    assert v.masks.shape == (T, n, 64, 64) and v.masks.dtype == bool
    assert 1 <= n <= 3 and len(v.instance_colors) == len(v.shapes) == n
    assert len(set(v.shapes)) == n and len(set(v.instance_colors)) == n
    again = generate_video(5)
    for name in ("rgb", "grey", "masks"):
        assert np.array_equal(getattr(v, name), getattr(again, name))
    assert (again.caption, again.instance_colors, again.shapes) == (v.caption, v.instance_colors, v.shapes)
    other = video(6)
    assert not np.array_equal(v.rgb, other.rgb) and v.caption != other.caption


def test_grey_is_lab_l_grey_of_rgb():
    v = video(3)
    assert np.array_equal(v.grey, to_grey(v.rgb))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 7])
def test_recolouring_changes_colours_but_not_the_grey_video(seed):
    """The key property: the grey video does not reveal any colour."""
    v, w = video(seed), _recoloured(seed)
    assert v.instance_colors != w.instance_colors and v.background_color != w.background_color
    assert np.array_equal(v.masks, w.masks)
    assert np.abs(v.rgb.astype(int) - w.rgb.astype(int)).max() > 20
    assert np.array_equal(v.grey, w.grey)


def test_lock_grey_hits_its_target_with_small_nudges():
    rng = np.random.default_rng(1)
    rgb = rng.integers(30, 226, size=(4000, 3)).astype(np.uint8)
    target = to_grey(rgb[None])[0, :, 0].astype(int) + rng.integers(-1, 2, size=4000)
    locked = lock_grey(rgb, target.astype(np.uint8))
    assert np.array_equal(to_grey(locked[None])[0, :, 0], target)
    assert np.abs(locked.astype(int) - rgb.astype(int)).max() <= 2


@pytest.mark.parametrize("seed", [0, 2, 5, 9])
def test_masks_match_rendered_pixels(seed):
    v = video(seed)
    assert v.masks.sum(axis=1).max() <= 1  # visible masks never overlap
    interior = binary_erosion(v.masks, structure=np.ones((1, 1, 3, 3), bool), border_value=0)
    for i, name in enumerate(v.instance_colors):
        colour = np.array(SHAPE_PALETTE[name].rgb, dtype=np.uint8)
        # The interior of a mask is exactly the instance colour ...
        assert (v.rgb[interior[:, i]] == colour).all()
        # ... and that exact colour appears nowhere outside the instance's mask.
        exact = (v.rgb == colour).all(axis=-1)
        assert not (exact & ~v.masks[:, i]).any()
    # Away from every shape: the background colour with only its lightness textured. (Slivers
    # under half a pixel are in no mask: skip pixels near a mask or the frame edge, where a
    # shape may be entering.)
    near = binary_dilation(v.masks.any(axis=1), structure=np.ones((1, 3, 3), bool), iterations=3)
    near[:, :3] = near[:, -3:] = near[:, :, :3] = near[:, :, -3:] = True
    lab = rgb2lab(v.rgb[~near].astype(np.float64)[None] / 255.0)[0]
    bg = np.array(BACKGROUND_PALETTE[v.background_color].lab)
    assert np.abs(lab[:, 0] - BACKGROUND_L).max() <= MAX_TEXTURE_AMPLITUDE + 0.5
    assert np.linalg.norm(lab[:, 1:] - bg[1:], axis=1).max() < 3.0
    assert lab[:, 0].std() > 0.5  # the texture is there


def test_shapes_leave_and_enter_the_frame():
    crossing = 0
    for seed in SEEDS:
        counts = video(seed).masks.sum(axis=(2, 3))  # (T, n)
        crossing += int(((counts == 0).any(axis=0) & (counts > 0).any(axis=0)).any())
    assert 3 <= crossing < len(SEEDS)


def test_long_mode_shapes_leave_and_come_back_with_constant_colour():
    returned = False
    for seed in range(4):
        v = generate_video(seed, num_frames=160, size=48, long=True)
        assert v.num_frames == 160 and v.long
        assert hue_spread(v.rgb, v.masks) < 0.05
        for i in range(v.num_instances):
            seen = v.masks[:, i].sum(axis=(1, 2)) > 0
            first, last = np.argmax(seen), len(seen) - 1 - np.argmax(seen[::-1])
            returned |= bool(seen.any() and not seen[first:last + 1].all())
    assert returned
    assert generate_video(0, long=True, size=16).num_frames == 256


def test_sizes_and_shape_counts():
    v = generate_video(1, size=128, num_frames=2, num_shapes=5)
    assert v.rgb.shape == (2, 128, 128, 3) and v.num_instances == 5
    counts = {video(s).num_instances for s in SEEDS}
    assert counts == {1, 2, 3}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 8}, "size must be an integer in \\[16, 1024\\]"),
        ({"num_frames": 0}, "num_frames must be in \\[1, 4096\\]"),
        ({"num_shapes": (0, 2)}, "num_shapes"),
        ({"num_shapes": (2, 9)}, "num_shapes"),
        ({"instance_colors": ["red", "blue", "green", "pink", "cyan"]}, "instance"),
        ({"background_color": "red"}, "unknown colour 'red'"),
        ({"num_shapes": (1, 2, 3)}, "num_shapes"),
        ({"supersample": 0}, "supersample"),
    ],
)
def test_generate_video_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_video(0, **kwargs)


def test_generate_video_rejects_bad_seed():
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            generate_video(seed)


# ----------------------------------------------------------------------------- captions


def test_captions_name_every_colour_and_shape():
    used_templates = set()
    for seed in SEEDS:
        v = video(seed)
        for colour, shape in zip(v.instance_colors, v.shapes):
            assert f"{colour} {shape}" in v.caption
        assert f"{v.background_color} background" in v.caption
        used_templates.add(v.caption_layout.template)
    assert len(used_templates) >= 4 and used_templates <= set(range(len(CAPTION_TEMPLATES)))


def test_caption_articles():
    for seed in SEEDS:
        v = video(seed)
        for colour in v.instance_colors + [v.background_color]:
            if colour[0] in "aeiou":
                assert f"an {colour}" in v.caption


def test_swap_caption_colors_round_trips_through_the_generator():
    seed = next(s for s in SEEDS if video(s).num_instances == 3)
    v = video(seed)
    caption, expected = swap_caption_colors(v, 0, 2)
    assert expected == [v.instance_colors[2], v.instance_colors[1], v.instance_colors[0]]
    assert caption != v.caption
    assert f"{expected[0]} {v.shapes[0]}" in caption and f"{expected[2]} {v.shapes[2]}" in caption
    # The swapped caption is exactly the caption of the same video re-drawn in the swapped colours.
    w = generate_video(seed, instance_colors=expected)
    assert w.caption == caption and np.array_equal(w.grey, v.grey)
    assert caption_with_colors(v, v.instance_colors) == v.caption
    with pytest.raises(ValueError, match="two different"):
        swap_caption_colors(v, 1, 1)
    with pytest.raises(ValueError, match="instance index"):
        swap_caption_colors(v, 0, 3)


# ----------------------------------------------------------------------------- metrics


def test_accuracy_is_one_on_ground_truth_and_zero_when_colours_permuted():
    for seed in SEEDS:
        v = video(seed)
        res = instance_color_accuracy(v.rgb, v.masks, v.instance_colors, return_details=True)
        assert res.accuracy == 1.0 and res.correct == res.total > 0 and res.chance == 1 / len(SHAPE_PALETTE)
        if v.num_instances >= 2:
            rolled = v.instance_colors[1:] + v.instance_colors[:1]  # every instance gets another colour
            w = generate_video(seed, instance_colors=rolled)
            assert instance_color_accuracy(w.rgb, w.masks, v.instance_colors) == 0.0
            # ... and the permuted video is fully right for the permuted sentence.
            assert instance_color_accuracy(w.rgb, w.masks, rolled) == 1.0


def test_accuracy_of_random_flat_colours_is_the_match_rate_and_near_chance():
    rng = np.random.default_rng(0)
    palette_rgb = SHAPE_PALETTE.rgb
    correct = total = 0
    for seed in SEEDS:
        v = video(seed)
        for _ in range(4):
            guess = rng.integers(len(SHAPE_PALETTE), size=v.num_instances)
            pred = v.rgb.copy()
            for i, g in enumerate(guess):
                pred[v.masks[:, i]] = palette_rgb[g]
            res = instance_color_accuracy(pred, v.masks, v.instance_colors, return_details=True)
            truth = np.array([SHAPE_PALETTE.index(c) for c in v.instance_colors])
            per_instance = np.array([s.total for s in res.instances])
            expect = (per_instance * (guess == truth)).sum()
            assert res.correct == expect  # an independent count of the matches
            correct, total = correct + res.correct, total + res.total
    assert abs(correct / total - 1 / len(SHAPE_PALETTE)) < 0.06


def test_accuracy_of_grey_prediction_is_low():
    pooled = [instance_color_accuracy(video(s).grey, video(s).masks, video(s).instance_colors, return_details=True)
              for s in SEEDS]
    acc = sum(r.correct for r in pooled) / sum(r.total for r in pooled)
    # A grey pixel's ab is ~0, nearest to the palette's least saturated colour; only that one can score.
    lowest = SHAPE_PALETTE.names[int(np.argmin(np.hypot(*SHAPE_PALETTE.lab[:, 1:].T)))]
    hits = sum(s.total for r in pooled for s in r.instances if s.expected == lowest)
    assert acc == pytest.approx(hits / sum(r.total for r in pooled))
    assert acc < 0.3


def test_hue_spread_zero_on_ground_truth_and_matches_scipy_on_drift():
    v = video(2)
    assert hue_spread(v.rgb, v.masks) < 0.01
    step = 4.0  # degrees of hue rotation per frame
    lab = rgb2lab(v.rgb.astype(np.float64) / 255.0)
    angles = np.deg2rad(step * np.arange(v.num_frames))[:, None, None]
    a, b = lab[..., 1], lab[..., 2]
    lab[..., 1], lab[..., 2] = a * np.cos(angles) - b * np.sin(angles), a * np.sin(angles) + b * np.cos(angles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drift = np.round(np.clip(lab2rgb(lab), 0, 1) * 255).astype(np.uint8)
    counts = v.masks.sum(axis=(2, 3))
    expected = [np.degrees(circstd(angles[counts[:, i] > 30].ravel())) for i in range(v.num_instances)
                if (counts[:, i] > 30).sum() >= 2]
    assert hue_spread(drift, v.masks, min_pixels=30) == pytest.approx(np.mean(expected), abs=0.5)
    assert hue_spread(drift, v.masks) > 5


def test_metric_accepts_float_tensors_and_mapping_palettes():
    v = video(4)
    as_tensor = torch.from_numpy(v.rgb.astype(np.float32) / 255.0)
    mapping = {c.name: c.lab for c in SHAPE_PALETTE}
    assert instance_color_accuracy(as_tensor, v.masks, v.instance_colors, mapping) == 1.0


def test_metric_rejects_bad_inputs():
    v = video(4)
    with pytest.raises(ValueError, match="not in the palette"):
        instance_color_accuracy(v.rgb, v.masks, ["mauve"] * v.num_instances)
    with pytest.raises(ValueError, match="instance"):
        instance_color_accuracy(v.rgb, v.masks, v.instance_colors + ["red"])
    with pytest.raises(ValueError, match="bool"):
        instance_color_accuracy(v.rgb, v.masks.astype(np.uint8), v.instance_colors)
    with pytest.raises(ValueError, match="shape"):
        instance_color_accuracy(v.rgb[:4], v.masks, v.instance_colors)
    with pytest.raises(ValueError, match="min_pixels"):
        hue_spread(v.rgb, v.masks, min_pixels=0)


def test_nothing_scored_gives_nan():
    v = video(4)
    assert np.isnan(instance_color_accuracy(v.rgb, np.zeros_like(v.masks), v.instance_colors))
    assert np.isnan(hue_spread(v.rgb, np.zeros_like(v.masks)))


# ----------------------------------------------------------------------------- dataset


def test_dataset_items():
    ds = SyntheticVideoDataset(3, seed_offset=10, num_frames=4, size=32)
    assert len(ds) == 3 and ds.seed(2) == 12 and ds.seed(-1) == 12
    item = ds[1]
    assert set(item) == {"pixel_values", "caption", "index"}
    pv = item["pixel_values"]
    assert pv.shape == (4, 3, 32, 32) and pv.dtype == torch.float32
    assert pv.min() >= -1 and pv.max() <= 1
    v = ds.video(1)
    back = ((pv.permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(back, v.rgb) and item["caption"] == v.caption and v.seed == 11
    with pytest.raises(IndexError):
        ds.seed(3)
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticVideoDataset(0)
    with pytest.raises(ValueError, match="size"):
        SyntheticVideoDataset(2, size=4)


# ----------------------------------------------------------------------------- writer + CLI


def test_write_dataset_png_round_trip_and_overwrite(tmp_path):
    from PIL import Image

    out = write_dataset(tmp_path / "set", 3, seed=7, size=32, num_frames=3, format="png")
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    meta = read_meta(out)
    assert [r["video"] for r in rows] == [m["video"] for m in meta] and len(rows) == 3
    for k, (row, rec) in enumerate(zip(rows, meta)):
        v = generate_video(7 + k, 3, 32)
        assert rec["seed"] == 7 + k and row["caption"] == v.caption == rec["caption"]
        assert rec["instance_colors"] == v.instance_colors and rec["shapes"] == v.shapes
        frames = sorted((out / row["video"]).glob("*.png"))
        rgb = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frames])
        assert np.array_equal(rgb, v.rgb)
        greys = sorted((out / rec["grey"]).glob("*.png"))
        assert np.array_equal(np.asarray(Image.open(greys[0]).convert("RGB")), v.grey[0])
        assert np.array_equal(load_masks(out / rec["masks"]), v.masks)
    palettes = json.loads((out / "palette.json").read_text())
    assert [c["name"] for c in palettes["shape"]] == SHAPE_PALETTE.names
    before = (out / "manifest.csv").read_text()
    with pytest.raises(FileExistsError):
        write_dataset(out, 1, seed=0, size=32, num_frames=2, format="png")
    assert (out / "manifest.csv").read_text() == before
    write_dataset(out, 1, seed=0, size=32, num_frames=2, format="png", overwrite=True)
    assert len(read_meta(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporaries left behind


def test_write_dataset_mp4_is_decodable_and_scores_perfectly(tmp_path):
    from lc4.io import read_frames

    out = write_dataset(tmp_path / "mp4", 1, seed=2, size=64, num_frames=6)
    rec = read_meta(out)[0]
    decoded = np.asarray(read_frames(out / rec["video"]))
    v = generate_video(2, 6, 64)
    assert decoded.shape == v.rgb.shape
    assert np.abs(decoded.astype(int) - v.rgb.astype(int)).mean() < 2.0
    assert instance_color_accuracy(decoded, load_masks(out / rec["masks"]), rec["instance_colors"]) == 1.0


def test_write_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format"):
        write_dataset(tmp_path / "a", 1, format="gif")
    with pytest.raises(ValueError, match="num_videos"):
        write_dataset(tmp_path / "a", 0)
    assert not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError):
        read_meta(tmp_path)


def test_cli_synth(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lc4")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["synth", str(out), "--num-videos", "2", "--size", "32", "--frames", "2",
                              "--format", "png", "--shapes", "2-3", "--seed", "4"])
    assert args.func(args) == 0
    assert [len(m["shapes"]) >= 2 for m in read_meta(out)] == [True, True]
    assert args.func(args) == 2 and "already exists" in capsys.readouterr().err
    args = parser.parse_args(["synth", str(tmp_path / "bad"), "--num-videos", "1", "--size", "8"])
    assert args.func(args) == 2 and "size must be" in capsys.readouterr().err
