"""The free-colour split of the procedural benchmark and the metrics of a free colour choice."""

import numpy as np
import pytest

from lc4.color import to_grey
from lc4.data.synthetic import SHAPE_PALETTE, SyntheticVideoDataset, generate_video, write_dataset, read_meta
from lc4.data.synthetic.naming import draw_naming, is_free_item
from lc4.evaluation.synthetic import evaluate_free_synthetic, held_out_video
from lc4.metrics.free_color import GREY, commitment_scores, flips_against_majority, free_color_labels, free_color_scores

T, S = 8, 32


def painted(colours, grey=False):
    """A (T, S, S, 3) video whose one square shape has colour colours[t] in frame t (isoluminant)."""
    from lc4.data.synthetic.palette import lab_to_srgb_uint8

    video = np.empty((len(colours), S, S, 3), dtype=np.uint8)
    masks = np.zeros((len(colours), 1, S, S), dtype=bool)
    masks[:, 0, 8:24, 8:24] = True
    for t, name in enumerate(colours):
        lab = np.zeros((S, S, 3))
        lab[..., 0] = 35.0
        lab[8:24, 8:24] = (60.0, 0.0, 0.0) if grey else SHAPE_PALETTE[name].lab
        video[t] = lab_to_srgb_uint8(lab)
    return video, masks


# ------------------------------------------------------------------ naming


def test_naming_changes_caption_only():
    named = generate_video(11, num_frames=3, num_shapes=2)
    free = generate_video(11, num_frames=3, num_shapes=2, colors_named="some")
    none = generate_video(11, num_frames=3, num_shapes=2, colors_named="none")
    for v in (free, none):
        np.testing.assert_array_equal(v.rgb, named.rgb)
        assert v.instance_colors == named.instance_colors
    assert all(named.named) and named.background_named and named.unnamed == []
    assert free.unnamed, "a free video leaves at least one shape's colour to the model"
    for i in range(2):
        assert (named.instance_colors[i] in free.caption) == free.named[i]
    assert not any(c in none.caption for c in SHAPE_PALETTE.names)
    assert none.caption.endswith("a background") or "a background" in none.caption


def test_free_split_statistics_and_validation():
    namings = [draw_naming(s, 2, "some") for s in range(400)]
    assert all(not all(n.shapes) for n in namings)
    share_bg = np.mean([n.background for n in namings])
    assert 0.4 < share_bg < 0.6
    assert 0.15 < np.mean([is_free_item(s, 0.25) for s in range(2000)]) < 0.35
    with pytest.raises(ValueError, match="colors_named"):
        draw_naming(0, 2, "most")
    with pytest.raises(ValueError, match="free_fraction"):
        SyntheticVideoDataset(4, free_fraction=1.5)
    with pytest.raises(ValueError, match="not both"):
        SyntheticVideoDataset(4, free_fraction=0.5, colors_named="none")


def test_dataset_mixes_named_and_free_and_words_follow():
    ds = SyntheticVideoDataset(64, num_frames=1, num_shapes=(1, 2), with_masks=True, free_fraction=0.5)
    modes = [ds.naming_mode(i) for i in range(64)]
    assert 16 < modes.count("some") < 48
    k = modes.index("some")
    item, video = ds[k], ds.video(k)
    assert item["caption"] == video.caption
    words = item["instance_words"].split(";")
    for i in video.unnamed:
        assert words[i] == video.shapes[i]  # the noun alone: no colour word to ground
    again = SyntheticVideoDataset(64, num_frames=1, num_shapes=(1, 2), free_fraction=0.5)
    assert [again.naming_mode(i) for i in range(64)] == modes  # drawn from the seed


def test_write_dataset_records_naming(tmp_path):
    out = write_dataset(tmp_path / "d", 4, num_frames=2, format="png", colors_named="some", size=32)
    meta = read_meta(out)
    assert all(not all(m["named"]) for m in meta)
    assert all(isinstance(m["background_named"], bool) for m in meta)


# ------------------------------------------------------------------ metrics on constructed predictions


def test_constant_colour_has_no_flips_and_full_chroma():
    video, masks = painted(["red"] * T)
    s = free_color_scores(video, masks, clip_frames=4)
    assert s.flip_rate_clip == 0 and s.flip_rate_video == 0
    assert s.seam_change_rate == 0 and s.inner_change_rate == 0
    assert s.choices == ["red"]
    assert s.chroma_ratios[0] == pytest.approx(np.linalg.norm(SHAPE_PALETTE["red"].lab[1:])
                                               / np.mean([np.linalg.norm(c.lab[1:]) for c in SHAPE_PALETTE]), rel=0.05)


def test_one_change_counts_where_it_happens():
    late = free_color_scores(*painted(["red"] * 7 + ["blue"]), clip_frames=4)
    assert late.flip_rate_video == pytest.approx(1 / 8) and late.flip_rate_clip == pytest.approx(1 / 8)
    assert late.seam_pairs == 1 and late.seam_changes == 0  # the change at 6 -> 7 is inside a clip
    assert late.inner_changes == 1 and late.inner_pairs == 6
    at_seam = free_color_scores(*painted(["red"] * 4 + ["blue"] * 4), clip_frames=4)
    assert at_seam.seam_changes == 1 and at_seam.inner_changes == 0
    assert at_seam.flip_rate_clip == 0 and at_seam.flip_rate_video == pytest.approx(0.5)
    assert at_seam.choices == ["red"]  # a tie goes to the colour seen first


def test_grey_output_is_consistent_but_not_committed():
    video, masks = painted(["red"] * T, grey=True)
    labels, _ = free_color_labels(video, masks)
    assert labels[0] == [GREY] * T
    s = free_color_scores(video, masks)
    assert s.flip_rate_video == 0
    c = commitment_scores(s.choices * 10, s.chroma_ratios * 10)
    assert c.chroma_ratio < 0.05 and c.grey_share == 1.0 and c.commitment < 0.01


def test_commitment_rewards_varied_saturated_choices_only():
    names = list(SHAPE_PALETTE.names)
    varied = commitment_scores(names * 3, [1.0] * 24)
    assert varied.entropy == pytest.approx(1.0) and varied.commitment == pytest.approx(1.0)
    same = commitment_scores(["red"] * 24, [1.0] * 24)
    assert same.entropy == pytest.approx(0.0) and same.commitment == pytest.approx(0.0)
    with_grey = commitment_scores(names * 3 + [GREY] * 8, [1.0] * 24 + [0.0] * 8)
    assert with_grey.entropy == pytest.approx(1.0) and with_grey.grey_share == pytest.approx(0.25)
    assert commitment_scores([GREY] * 4, [0.0] * 4).entropy == 0.0
    agree = commitment_scores(names * 2, [1.0] * 16, per_seed=[names, names])
    differ = commitment_scores(names * 2, [1.0] * 16, per_seed=[names, names[1:] + names[:1]])
    assert agree.seed_agreement == 1.0 and differ.seed_agreement == 0.0


def test_flips_against_majority_blocks():
    assert flips_against_majority(["a", "a", "b", None]) == (1, 3)
    assert flips_against_majority(["a", "b", "b", "b"], 2) == (1, 4)
    with pytest.raises(ValueError):
        flips_against_majority(["a"], 0)


def test_evaluate_free_scores_oracle_and_flicker():
    videos = [held_out_video(k, num_frames=T, size=S, colors_named="some") for k in range(3)]
    by_caption = {v.caption: v for v in videos}

    def oracle(grey, caption, seed=0):
        return by_caption[caption].rgb

    def flicker(grey, caption, seed=0):  # every frame an independent palette colour per shape
        v = by_caption[caption]
        rng = np.random.default_rng(seed)
        out = v.rgb.copy()
        for t in range(T):
            recoloured = generate_video(v.seed, T, S, (1, 2), instance_colors=list(
                rng.choice(SHAPE_PALETTE.names, v.num_instances, replace=False)))
            out[t] = recoloured.rgb[t]
        return out

    good = evaluate_free_synthetic(oracle, videos=3, size=S, num_frames=T)
    bad = evaluate_free_synthetic(flicker, videos=3, size=S, num_frames=T)
    assert good.flip_rate_clip == 0 and good.named_accuracy == 1.0 and good.seed_agreement == 1.0
    assert bad.flip_rate_clip > 0.4 and bad.inner_change_rate > 0.6
    assert to_grey(videos[0].rgb).shape == videos[0].rgb.shape
