"""Training data pipeline: manifests, clip datasets, frame folders, the datamodule."""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lc4.data.datamodule import EpochShardSampler, VideoDataModule, collate_clips
from lc4.data.frame_folder import FrameFolderDataset, find_sequences, load_caption_map
from lc4.data.manifest import (
    ManifestEntry,
    load_manifest,
    manifest_from_internvid,
    parse_timestamp,
    write_manifest,
)
from lc4.data.video_clips import (
    TooManyUnreadableError,
    VideoClipDataset,
    clip_rng,
    frame_window,
    frames_to_tensor,
    normalize_stride,
    plan_clip,
)

FPS = 12
LEVEL = 10  # grey level step per frame: frame i is filled with i * LEVEL


def write_video(path: Path, n_frames: int = 24, h: int = 48, w: int = 64, fps: int = FPS,
                container_format: str | None = None) -> Path:
    """Lossless H.264 whose frame i is uniformly grey at i * LEVEL (so pixels reveal the index)."""
    import av

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            frame = np.full((h, w, 3), i * LEVEL, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_ids(pixel_values: torch.Tensor) -> np.ndarray:
    """Invert the grey-level coding: the frame index shown in each output frame."""
    levels = (pixel_values.mean(dim=(1, 2, 3)) + 1.0) * 127.5
    return np.rint(levels.numpy() / LEVEL).astype(int)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_video(root / "long.mp4", n_frames=24)
    write_video(root / "wide.mp4", n_frames=24, h=40, w=96)
    write_video(root / "short.mp4", n_frames=5)
    (root / "sub").mkdir()
    write_video(root / "sub" / "clip.mp4", n_frames=20)
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    good = (root / "long.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    write_video(root / "long.h264", n_frames=24, container_format="h264")  # raw H.264: decord cannot open it
    return root


def write_csv(path: Path, rows: list[str], header: str = "video,caption,start,end") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# --------------------------------------------------------------------------- manifests


def test_csv_and_jsonl_parse_to_the_same_entries(media: Path, tmp_path: Path) -> None:
    csv_path = write_csv(media / "m.csv", ["long.mp4,a red car,0.5,1.5", "sub/clip.mp4,  a dog ,,",
                                           f"{media / 'wide.mp4'},,1,"])
    jsonl = media / "m.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"video": "long.mp4", "caption": "a red car", "start": 0.5, "end": 1.5}),
        "",
        json.dumps({"video": "sub/clip.mp4", "caption": "a dog", "extra": 3}),
        json.dumps({"video": str(media / "wide.mp4"), "caption": None, "start": "1"}),
    ]))
    from_csv, from_jsonl = load_manifest(csv_path), load_manifest(jsonl)
    assert from_csv == from_jsonl
    assert [e.video for e in from_csv] == [media / "long.mp4", media / "sub" / "clip.mp4", media / "wide.mp4"]
    assert from_csv[0] == ManifestEntry(media / "long.mp4", "a red car", 0.5, 1.5)
    assert from_csv[1].caption == "a dog" and from_csv[1].start is None and from_csv[1].end is None
    assert from_csv[2].caption == "" and from_csv[2].start == 1.0


def test_paths_are_relative_to_the_manifest_not_the_cwd(media: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "lists").mkdir()
    rel = os.path.relpath(media / "long.mp4", tmp_path / "lists")
    path = write_csv(tmp_path / "lists" / "m.csv", [f"{rel},x,,"])
    monkeypatch.chdir(media / "sub")
    assert load_manifest(path)[0].video.samefile(media / "long.mp4")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_manifest_round_trip(media: Path, tmp_path: Path, suffix: str) -> None:
    entries = [ManifestEntry(media / "long.mp4", 'quote " and, comma', 0.25, 1.0),
               ManifestEntry(media / "sub" / "clip.mp4", "plain")]
    out = write_manifest(entries, tmp_path / "out" / f"m{suffix}")
    text = out.read_text()
    assert str(media) not in text  # stored relative to the manifest's folder
    assert load_manifest(out) == entries


@pytest.mark.parametrize(
    "rows, header, exc, words",
    [
        ([], "video,caption", ValueError, "empty manifest"),
        (["long.mp4,x"], "video,text", ValueError, "missing column 'caption'"),
        (["long.mp4,x,-1,"], None, ValueError, "start must be finite and >= 0"),
        (["long.mp4,x,abc,"], None, ValueError, "start must be a number"),
        (["long.mp4,x,2,1"], None, ValueError, "must be greater than start"),
        (["long.mp4,x,,nan"], None, ValueError, "end must be finite"),
        (["long.mp4,x,1,2,9"], None, ValueError, "cells"),
        ([",x,,"], None, ValueError, "non-empty path"),
    ],
)
def test_manifest_errors(media: Path, rows, header, exc, words) -> None:
    path = write_csv(media / "bad.csv", rows, header or "video,caption,start,end")
    with pytest.raises(exc, match=words):
        load_manifest(path)


def test_manifest_missing_videos_are_listed(media: Path) -> None:
    rows = [f"gone{i}.mp4,x,," for i in range(8)] + ["long.mp4,x,,"]
    with pytest.raises(FileNotFoundError) as info:
        load_manifest(write_csv(media / "missing.csv", rows))
    msg = str(info.value)
    assert "8 of 9 videos not found" in msg and "gone0.mp4" in msg and "3 more" in msg
    assert "gone7.mp4" not in msg and "\n" not in msg


def test_manifest_file_level_errors(media: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv")
    (tmp_path / "m.txt").write_text("video,caption\n")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_manifest(tmp_path / "m.txt")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty manifest"):
        load_manifest(tmp_path / "empty.csv")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="empty manifest"):
        load_manifest(tmp_path / "empty.jsonl")
    (media / "bad.jsonl").write_text('{"video": "long.mp4", "caption": "x"}\n{"video": oops}\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_manifest(media / "bad.jsonl")
    (media / "bad.jsonl").write_text('{"video": "long.mp4"}\n')
    with pytest.raises(ValueError, match="line 1: missing column 'caption'"):
        load_manifest(media / "bad.jsonl")
    (media / "bad.jsonl").write_text('["long.mp4", "x"]\n')
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_manifest(media / "bad.jsonl")


# --------------------------------------------------------------------------- InternVid


@pytest.mark.parametrize("text, seconds", [("00:00:01.500", 1.5), ("01:02:03.250", 3723.25),
                                           ("02:05", 125.0), ("7.5", 7.5), (4, 4.0)])
def test_parse_timestamp(text, seconds) -> None:
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "1:2:3:4", "00:61:00", "-1", "ab:cd", None, True])
def test_parse_timestamp_rejects(bad) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(bad)


def test_manifest_from_internvid(media: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "vidA_00:00:01.000_00:00:03.000.mp4").write_bytes((media / "long.mp4").read_bytes())
    (clips / "vidB.mkv").write_bytes((media / "long.mp4").read_bytes())
    records = [
        {"YoutubeID": "vidA", "Start_timestamp": "00:00:01.000", "End_timestamp": "00:00:03.000",
         "Caption": "a cut clip", "UMT_Score": 0.4, "Aesthetic_Score": 6.0},
        {"YoutubeID": "vidB", "Start_timestamp": "00:00:00.500", "End_timestamp": "00:00:01.750",
         "Caption": "part of a full video", "UMT_Score": 0.4, "Aesthetic_Score": 5.9},
        {"YoutubeID": "vidC", "Start_timestamp": "00:00:00.000", "End_timestamp": "00:00:02.000",
         "Caption": "not downloaded", "UMT_Score": 0.4, "Aesthetic_Score": 7.0},
        {"YoutubeID": "vidB", "Start_timestamp": "00:00:00.000", "End_timestamp": "00:00:01.000",
         "Caption": "low aesthetics", "UMT_Score": 0.4, "Aesthetic_Score": 4.0},
    ]
    ann = tmp_path / "InternVid-10M-FLT.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "manifests" / "train.jsonl"
    entries = manifest_from_internvid(ann, clips, out, min_aesthetic_score=5.5)
    expected = [ManifestEntry(clips / "vidA_00:00:01.000_00:00:03.000.mp4", "a cut clip"),
                ManifestEntry(clips / "vidB.mkv", "part of a full video", 0.5, 1.75)]
    assert entries == expected
    assert load_manifest(out) == expected
    assert "../clips/" in out.read_text()
    assert len(manifest_from_internvid(ann, clips, tmp_path / "all.csv")) == 3
    assert len(manifest_from_internvid(ann, clips, tmp_path / "one.csv", max_entries=1)) == 1


def test_manifest_from_internvid_errors(media: Path, tmp_path: Path) -> None:
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"YoutubeID": "zz", "Start_timestamp": "00:00:00.000",
                               "End_timestamp": "00:00:01.000", "Caption": "c"}) + "\n")
    with pytest.raises(ValueError, match="none of the 1 annotated clips"):
        manifest_from_internvid(ann, media, tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="clips folder not found"):
        manifest_from_internvid(ann, tmp_path / "nope", tmp_path / "m.csv")
    ann.write_text(json.dumps({"YoutubeID": "zz", "Caption": "c"}) + "\n")
    with pytest.raises(ValueError, match="missing field 'Start_timestamp'"):
        manifest_from_internvid(ann, media, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


# --------------------------------------------------------------------------- clip planning


def test_plan_clip_stays_in_bounds_with_valid_strides() -> None:
    rng = np.random.default_rng(123)
    for _ in range(3000):
        first = int(rng.integers(0, 50))
        length = int(rng.integers(1, 80))
        num_frames = int(rng.integers(1, 17))
        lo = int(rng.integers(1, 6))
        hi = lo + int(rng.integers(0, 5))
        random_start = bool(rng.integers(0, 2))
        idx = plan_clip(first, first + length, num_frames, (lo, hi), random_start,
                        np.random.default_rng(int(rng.integers(1 << 31))))
        assert idx.shape == (num_frames,)
        assert idx.min() >= first and idx.max() < first + length
        steps = np.diff(idx)
        if num_frames == 1:
            continue
        if length >= num_frames:  # fits without padding: one constant stride
            assert len(set(steps.tolist())) == 1
            step = steps[0]
            assert step <= hi
            assert step >= lo or (num_frames - 1) * lo + 1 > length  # lowered only when needed
            if step < lo:  # lowered as little as possible
                assert (num_frames - 1) * (step + 1) + 1 > length
            if not random_start:  # centred
                before, after = idx[0] - first, first + length - 1 - idx[-1]
                assert abs(before - after) <= 1
        else:  # too short: every frame once, then the last one repeated
            assert idx.tolist() == list(range(first, first + length)) + [first + length - 1] * (num_frames - length)


def test_plan_clip_draws_every_allowed_stride_and_start() -> None:
    strides, starts = set(), set()
    for i in range(400):
        idx = plan_clip(0, 40, 8, (1, 4), True, clip_rng(0, 0, i))
        strides.add(int(idx[1] - idx[0]))
        starts.add(int(idx[0]))
    assert strides == {1, 2, 3, 4}
    assert min(starts) == 0 and max(starts) == 40 - 8  # stride 1 can start anywhere up to 32


def test_frame_window_converts_seconds() -> None:
    assert frame_window(24, 12.0, None, None) == (0, 24)
    assert frame_window(24, 12.0, 0.5, 1.5) == (6, 18)
    assert frame_window(24, 12.0, 1.0, 100.0) == (12, 24)
    assert frame_window(24, 29.97, 0.1, 0.2) == (3, 6)  # frames at 0.100 s .. 0.167 s


def test_normalize_stride() -> None:
    assert normalize_stride(3) == (3, 3) and normalize_stride((1, 4)) == (1, 4)
    assert normalize_stride([2, 2]) == (2, 2)
    for bad in (0, (3, 2), (0, 2), "2", (1, 2, 3), 1.5):
        with pytest.raises(ValueError, match="stride"):
            normalize_stride(bad)


def test_frames_to_tensor_matches_resize_then_crop() -> None:
    """Crop-then-resize equals an independent resize-short-side + centre-crop (up to rounding)."""
    rng = np.random.default_rng(0)
    frames = (rng.random((2, 60, 90, 3)) * 255).astype(np.uint8)
    ours = frames_to_tensor(frames, 60)  # no resize: a plain centre crop
    ref = torch.from_numpy(frames[:, :, 15:75]).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(ours, ref)
    smooth = np.repeat(np.repeat(np.linspace(0, 255, 30)[None, :, None], 20, 0), 3, 2)
    smooth = np.broadcast_to(smooth.astype(np.uint8), (1, 20, 30, 3))
    out = frames_to_tensor(np.ascontiguousarray(smooth), 40)  # upsample 20 → 40
    assert out.shape == (1, 3, 40, 40) and out.min() >= -1 and out.max() <= 1
    row = out[0, 0, 20]
    assert torch.all(row[1:] >= row[:-1] - 1e-6)  # horizontal ramp preserved
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        frames_to_tensor(frames[..., :2], 32)


# --------------------------------------------------------------------------- video dataset


@pytest.fixture()
def manifest(media: Path) -> Path:
    return write_csv(media / "train.csv", ["long.mp4,a,,", "wide.mp4,b,0.5,1.5", "sub/clip.mp4,c,,",
                                           "short.mp4,d,,", "long.mp4,e,1.0,"])


def test_video_dataset_shapes_and_range(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=4, resolution=32)
    assert len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"pixel_values", "caption", "index"}
        assert s["pixel_values"].shape == (4, 3, 32, 32) and s["pixel_values"].dtype == torch.float32
        assert -1.0 <= s["pixel_values"].min() and s["pixel_values"].max() <= 1.0
        assert s["index"] == i and s["caption"] == "abcde"[i]
        # RGB grey frames: the three channels agree
        torch.testing.assert_close(s["pixel_values"][:, 0], s["pixel_values"][:, 2], atol=2 / 255, rtol=0)


def test_clips_lie_in_the_window_with_allowed_strides(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=4, resolution=16, stride=(1, 3))
    windows = {0: (0, 24), 1: (6, 18), 2: (0, 20), 4: (12, 24)}
    for epoch in range(6):
        for i, (first, stop) in windows.items():
            ids = frame_ids(ds[(i, epoch)]["pixel_values"])
            assert ids.min() >= first and ids.max() < stop, (epoch, i, ids)
            assert len(set(np.diff(ids).tolist())) == 1 and 1 <= ids[1] - ids[0] <= 3
            expected = plan_clip(first, stop, 4, (1, 3), True, clip_rng(0, epoch, i))
            assert ids.tolist() == expected.tolist()  # decoded pixels match the planned frames


def test_short_video_is_padded_with_its_last_frame(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=8, resolution=16, stride=(2, 4))
    assert frame_ids(ds[3]["pixel_values"]).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_non_random_start_is_centred_and_fixed(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=8, resolution=16, stride=2, random_start=False)
    for epoch in range(3):
        assert frame_ids(ds[(0, epoch)]["pixel_values"]).tolist() == [4, 6, 8, 10, 12, 14, 16, 18]


def test_samples_depend_only_on_seed_epoch_index(manifest: Path) -> None:
    a = VideoClipDataset(manifest, num_frames=4, resolution=24, random_crop=True, seed=7)
    b = VideoClipDataset(manifest, num_frames=4, resolution=24, random_crop=True, seed=7)
    for i in [4, 0, 2]:  # order must not matter
        torch.testing.assert_close(a[(i, 3)]["pixel_values"], b[(i, 3)]["pixel_values"], rtol=0, atol=0)
    b.set_epoch(3)
    torch.testing.assert_close(a[(1, 3)]["pixel_values"], b[1]["pixel_values"], rtol=0, atol=0)
    plans = lambda ds, epoch: [frame_ids(ds[(i, epoch)]["pixel_values"]).tolist() for i in (0, 2, 4)]
    assert plans(a, 0) != plans(a, 1)  # new epoch → new clips
    other_seed = VideoClipDataset(manifest, num_frames=4, resolution=24, seed=8)
    assert plans(a, 0) != plans(other_seed, 0)


def test_samples_do_not_depend_on_worker_count(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=4, resolution=16)
    keys = [(i, e) for e in (0, 1) for i in range(len(ds))]

    def load(workers: int) -> torch.Tensor:
        loader = DataLoader(ds, batch_size=2, sampler=keys, num_workers=workers, collate_fn=collate_clips)
        return torch.cat([b["pixel_values"] for b in loader])

    torch.testing.assert_close(load(0), load(2), rtol=0, atol=0)


def test_set_epoch_reaches_persistent_workers(manifest: Path) -> None:
    ds = VideoClipDataset(manifest, num_frames=4, resolution=16)
    loader = DataLoader(ds, batch_size=5, num_workers=1, persistent_workers=True, collate_fn=collate_clips)
    first = next(iter(loader))["pixel_values"]
    ds.set_epoch(2)
    second = next(iter(loader))["pixel_values"]  # same worker process, new epoch
    expected = torch.stack([ds[(i, 2)]["pixel_values"] for i in range(5)])
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    assert not torch.equal(first, second)


def test_corrupt_videos_are_skipped_counted_and_warned_once(media: Path, caplog) -> None:
    path = write_csv(media / "corrupt.csv", ["random.mp4,bad,,", "long.mp4,good,,", "truncated.mp4,bad,,",
                                             "sub/clip.mp4,good2,,"])
    ds = VideoClipDataset(path, num_frames=4, resolution=16)
    with caplog.at_level(logging.WARNING, logger="lc4.data.video_clips"):
        for epoch in range(3):
            for i in range(len(ds)):
                s = ds[(i, epoch)]
                assert s["index"] in (1, 3) and s["caption"] in ("good", "good2")
    assert ds.num_skipped == 2
    assert sorted(ds.skipped_paths) == sorted([str(media / "random.mp4"), str(media / "truncated.mp4")])
    warnings = [r for r in caplog.records if "skipping unreadable video" in r.getMessage()]
    assert len(warnings) == 2
    # the substitute is deterministic: a fresh dataset picks the same one
    fresh = VideoClipDataset(path, num_frames=4, resolution=16)
    assert [fresh[(i, 1)]["index"] for i in (0, 2)] == [ds[(i, 1)]["index"] for i in (0, 2)]


def test_skips_are_shared_with_loader_workers(media: Path) -> None:
    path = write_csv(media / "corrupt2.csv", ["random.mp4,bad,,", "long.mp4,good,,"])
    ds = VideoClipDataset(path, num_frames=2, resolution=16)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["index"].tolist() == [1, 1]
    assert ds.num_skipped == 1  # counted in the worker, visible here


def test_all_corrupt_raises_a_clear_error(media: Path) -> None:
    path = write_csv(media / "allbad.csv", ["random.mp4,x,,", "truncated.mp4,y,,"])
    ds = VideoClipDataset(path, num_frames=2, resolution=16)
    with pytest.raises(ValueError, match="all 2 videos of VideoClipDataset are unreadable"):
        ds[0]


def test_too_many_unreadable_videos_raise_a_clear_error(media: Path) -> None:
    """Skipping has a limit: more than max_unreadable_fraction of the (at least unreadable_min_tried)
    distinct videos tried unreadable is an error naming them, not a run on what is left."""
    rows = ["random.mp4,bad,,", "truncated.mp4,bad,,"] + [f"long.mp4,good{i},," for i in range(6)]
    path = write_csv(media / "limit.csv", rows)
    ds = VideoClipDataset(path, num_frames=2, resolution=16, unreadable_min_tried=4)
    with pytest.raises(TooManyUnreadableError, match=r"2 of the \d+ videos tried so far are unreadable") as err:
        for i in range(len(ds)):
            ds[(i, 0)]
    assert "random.mp4" in str(err.value) and "max_unreadable_fraction = 5 %" in str(err.value)
    assert isinstance(err.value, ValueError)
    # the share is of what was tried so far: good videos first, 2 of 8 stays within a 30 % limit;
    # and below unreadable_min_tried nothing is judged yet (the bad ones first: 2 of 2)
    late = write_csv(media / "limit_late.csv", rows[2:] + rows[:2])
    for manifest, kwargs in ((late, dict(max_unreadable_fraction=0.3, unreadable_min_tried=4)),
                             (path, dict(unreadable_min_tried=20))):
        ok = VideoClipDataset(manifest, num_frames=2, resolution=16, **kwargs)
        assert all(ok[(i, 0)]["caption"].startswith("good") for i in range(len(ok)))
        assert ok.num_skipped == 2 and ok.num_tried == 8 and ok.unreadable_error() is None
    # raise_on_limit=False (what VideoDataModule sets under LC4Module) only reports it
    quiet = VideoClipDataset(path, num_frames=2, resolution=16, unreadable_min_tried=4)
    quiet.raise_on_limit = False
    for i in range(len(quiet)):
        quiet[(i, 0)]
    assert "2 of the 8 videos tried so far are unreadable (25.0 %" in quiet.unreadable_error()
    with pytest.raises(TooManyUnreadableError):
        quiet.check_unreadable()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="max_unreadable_fraction"):
            VideoClipDataset(path, max_unreadable_fraction=bad)
        with pytest.raises(ValueError, match="max_unreadable_fraction"):
            VideoDataModule(train_manifest=str(path), max_unreadable_fraction=bad)


def test_datamodule_passes_the_unreadable_limit_and_leaves_it_to_lc4_module(media: Path) -> None:
    path = write_csv(media / "limit_dm.csv", ["long.mp4,a,,", "sub/clip.mp4,b,,"])
    dm = VideoDataModule(train_manifest=str(path), num_frames=2, resolution=16, batch_size=1, num_workers=0,
                         max_unreadable_fraction=0.25)
    dm.setup("fit")
    assert dm.train_dataset.max_unreadable_fraction == 0.25
    dm.train_dataloader()
    assert dm.train_dataset.raise_on_limit  # no trainer: the dataset raises itself
    dm.trainer = types.SimpleNamespace(lightning_module=types.SimpleNamespace(checks_unreadable_data=True),
                                       distributed_sampler_kwargs=None)
    dm.train_dataloader()
    assert not dm.train_dataset.raise_on_limit  # the module checks it, every rank agreeing


def test_videos_decord_cannot_read_are_read_with_pyav(media: Path, monkeypatch) -> None:
    """A raw H.264 stream (decord fails to open it) gives the same clip as the MP4 of the same frames;
    with decord failing on everything, PyAV reads the MP4 as decord does; a file neither reads is skipped."""
    import decord

    raw = write_csv(media / "raw.csv", ["long.h264,a,,"])
    mp4 = write_csv(media / "mp4.csv", ["long.mp4,a,,"])
    with pytest.raises(Exception):
        decord.VideoReader(str(media / "long.h264"))
    from_raw, from_mp4 = (VideoClipDataset(m, num_frames=4, resolution=16, stride=(1, 4)) for m in (raw, mp4))
    for epoch in range(3):
        a, b = from_raw[(0, epoch)], from_mp4[(0, epoch)]
        assert a["index"] == 0 and from_raw.num_skipped == 0
        assert frame_ids(a["pixel_values"]).tolist() == frame_ids(b["pixel_values"]).tolist()
    with_decord = [from_mp4[(0, e)]["pixel_values"] for e in range(3)]

    def broken(*args, **kwargs):
        raise RuntimeError("decord: cannot open")

    monkeypatch.setattr(decord, "VideoReader", broken)
    pyav_only = VideoClipDataset(mp4, num_frames=4, resolution=16, stride=(1, 4))
    for e in range(3):
        torch.testing.assert_close(pyav_only[(0, e)]["pixel_values"], with_decord[e], atol=2 / 127.5, rtol=0)
    both = write_csv(media / "both_bad.csv", ["random.mp4,x,,", "long.mp4,y,,"])
    ds = VideoClipDataset(both, num_frames=2, resolution=16)
    assert ds[0]["index"] == 1 and ds.skipped_paths == [str(media / "random.mp4")]


def test_start_after_the_end_of_the_video_is_skipped(media: Path) -> None:
    path = write_csv(media / "late.csv", ["long.mp4,late,50,60", "long.mp4,ok,,"])
    ds = VideoClipDataset(path, num_frames=2, resolution=16)
    assert ds[0]["index"] == 1 and ds.num_skipped == 1


def test_video_dataset_argument_errors(manifest: Path) -> None:
    for kwargs, words in [(dict(num_frames=0), "num_frames"), (dict(resolution=-2), "resolution"),
                          (dict(seed=-1), "seed"), (dict(stride=(4, 1)), "stride")]:
        with pytest.raises(ValueError, match=words):
            VideoClipDataset(manifest, **kwargs)
    ds = VideoClipDataset(manifest, num_frames=2, resolution=16)
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)
    with pytest.raises(ValueError, match="no entries"):
        VideoClipDataset([])


# --------------------------------------------------------------------------- frame folders


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("davis")
    for seq, n in (("bear", 6), ("car-shadow", 5)):
        folder = root / "JPEGImages" / "480p" / seq
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((36, 48, 3), i * LEVEL * 2, np.uint8)).save(folder / f"{i:05d}.png")
    return root


def test_frame_folder_davis_single_frames(davis: Path) -> None:
    ds = FrameFolderDataset(davis, num_frames=1, resolution=24, captions={"bear": "a brown bear"})
    assert len(ds) == 11
    s = ds[0]
    assert s["pixel_values"].shape == (1, 3, 24, 24) and s["caption"] == "a brown bear"
    assert ds[10]["caption"] == ""
    assert [int(frame_ids(ds[i]["pixel_values"])[0]) // 2 for i in range(6)] == list(range(6))


def test_frame_folder_clips(davis: Path, tmp_path: Path) -> None:
    captions = tmp_path / "prompts.csv"
    captions.write_text("name,caption\ncar-shadow,a silver car\n")
    ds = FrameFolderDataset(davis, num_frames=4, resolution=16, stride=(1, 2), captions=captions)
    assert len(ds) == 2
    for epoch in range(4):
        s = ds[(1, epoch)]
        ids = frame_ids(s["pixel_values"]) // 2
        assert s["caption"] == "a silver car" and ids.min() >= 0 and ids.max() < 5
        assert ids.tolist() == plan_clip(0, 5, 4, (1, 2), True, clip_rng(0, epoch, 1)).tolist()
    assert frame_ids(ds[(1, 0)]["pixel_values"]).shape == (4,)


def test_frame_folder_loose_images_and_errors(tmp_path: Path) -> None:
    flat = tmp_path / "photos"
    flat.mkdir()
    for i, name in enumerate(["img10.png", "img2.png", "img1.png"]):
        Image.fromarray(np.full((20, 30, 3), 40 * (i + 1), np.uint8)).save(flat / name)
    assert [p.name for p in find_sequences(flat)["photos"]] == ["img1.png", "img2.png", "img10.png"]
    ds = FrameFolderDataset(flat, num_frames=1, resolution=16, captions={"img2": "second"})
    assert len(ds) == 3 and [ds[i]["caption"] for i in range(3)] == ["", "second", ""]
    (flat / "broken.png").write_bytes(b"not an image")
    ds = FrameFolderDataset(flat, num_frames=1, resolution=16)
    assert all(ds[i]["index"] != 0 for i in range(4)) and ds.num_skipped == 1  # broken.png sorts first
    with pytest.raises(FileNotFoundError, match="frame folder not found"):
        FrameFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        FrameFolderDataset(tmp_path / "empty")
    (tmp_path / "caps.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_caption_map(tmp_path / "caps.json")


# --------------------------------------------------------------------------- datamodule


def test_collate_clips() -> None:
    batch = collate_clips([{"pixel_values": torch.zeros(2, 3, 4, 4), "caption": "a", "index": 0},
                           {"pixel_values": torch.ones(2, 3, 4, 4), "caption": "b", "index": 5}])
    assert batch["pixel_values"].shape == (2, 2, 3, 4, 4)
    assert batch["caption"] == ["a", "b"] and batch["index"].tolist() == [0, 5]
    with pytest.raises(ValueError, match="shapes differ"):
        collate_clips([{"x": torch.zeros(2)}, {"x": torch.zeros(3)}])


def test_datamodule_batches(manifest: Path) -> None:
    dm = VideoDataModule(train_manifest=str(manifest), val_manifest=str(manifest), num_frames=4,
                         resolution=16, batch_size=2, num_workers=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # 5 clips, batch 2, last short batch dropped
    assert batches[0]["pixel_values"].shape == (2, 4, 3, 16, 16) and len(batches[0]["caption"]) == 2
    val = list(dm.val_dataloader())
    assert sum(len(b["caption"]) for b in val) == 5
    val_again = list(dm.val_dataloader())
    torch.testing.assert_close(val[0]["pixel_values"], val_again[0]["pixel_values"], rtol=0, atol=0)


def test_datamodule_ranks_get_disjoint_shards(manifest: Path) -> None:
    rows = [f"{['long', 'wide', 'sub/clip'][i % 3]}.mp4,c{i},," for i in range(8)]
    path = write_csv(manifest.parent / "eight.csv", rows)
    seen = []
    for rank in (0, 1):
        dm = VideoDataModule(train_manifest=str(path), num_frames=2, resolution=8, batch_size=2,
                             num_workers=0, num_replicas=2, rank=rank)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        seen.append({int(i) for b in loader for i in b["index"]})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(8))
    # a plain DistributedSampler gives the same shards (the sampler only adds the epoch)
    ds = dm.train_dataset
    plain = list(torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, seed=0))
    ours = EpochShardSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0)
    assert [i for i, _ in ours] == plain


def test_sampler_epoch_changes_clips(manifest: Path) -> None:
    dm = VideoDataModule(train_manifest=str(manifest), num_frames=4, resolution=8, batch_size=5,
                         num_workers=0, shuffle=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert all(isinstance(k, tuple) for k in loader.sampler)
    ids = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        ids.append([frame_ids(v).tolist() for v in next(iter(loader))["pixel_values"]])
    assert ids[0] != ids[1]


def test_datamodule_validates_before_training(media: Path) -> None:
    bad = write_csv(media / "dm_bad.csv", ["long.mp4,x,,", "missing.mp4,y,,"])
    dm = VideoDataModule(train_manifest=str(bad), num_workers=0)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="no training data"):
        VideoDataModule(num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="one training source"):
        VideoDataModule(train_manifest="a.csv", frame_root="frames")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        VideoDataModule(train_manifest="a.csv", batch_size=0)
    with pytest.raises(ValueError, match="rank must be in"):
        VideoDataModule(train_manifest="a.csv", num_replicas=2, rank=2)


def test_datamodule_frame_root(davis: Path) -> None:
    dm = VideoDataModule(frame_root=str(davis), num_frames=1, resolution=16, batch_size=4, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 1, 3, 16, 16) and batch["caption"] == [""] * 4


def test_datamodule_synthetic_source_uses_resolution_and_disjoint_seeds() -> None:
    dm = VideoDataModule(synthetic={"num_videos": 6}, val_synthetic={"num_videos": 3}, num_frames=3, resolution=32,
                         batch_size=2, num_workers=0, seed=5)
    dm.setup("fit")
    train_seeds = {dm.train_dataset.seed(i) for i in range(6)}
    val_seeds = {dm.val_dataset.seed(i) for i in range(3)}
    assert not train_seeds & val_seeds
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (2, 3, 3, 32, 32) and len(batch["caption"]) == 2


def test_datamodule_in_a_lightning_trainer(manifest: Path) -> None:
    """Lightning keeps the sampler, sets its epoch every epoch, and shards come out whole."""
    import pytorch_lightning as pl

    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen: list[tuple[int, list[int]]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, frame_ids(batch["pixel_values"][0]).tolist()))
            return (self.w * batch["pixel_values"].mean()).sum()

        def validation_step(self, batch, batch_idx):
            self.seen.append((-1, frame_ids(batch["pixel_values"][0]).tolist()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    dm = VideoDataModule(train_manifest=str(manifest), num_frames=4, resolution=8, batch_size=1,
                         num_workers=0, shuffle=False)
    model = Recorder()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)  # no validation source: the val loop is skipped
    assert [e for e, _ in model.seen] == [0, 1]
    assert model.seen[0][1] != model.seen[1][1]  # index 0 in both epochs, different clips
    ds = dm.train_dataset
    assert model.seen[1][1] == frame_ids(ds[(0, 1)]["pixel_values"]).tolist()


def test_datamodule_signature_is_cli_friendly() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VideoDataModule, "data")
    cfg = parser.parse_args(["--data.train_manifest=m.csv", "--data.stride=[2, 3]",
                             "--data.synthetic={\"num_videos\": 4}"])
    assert cfg.data.stride == (2, 3) and cfg.data.synthetic == {"num_videos": 4}
    assert cfg.data.num_frames == 8 and cfg.data.resolution == 256 and cfg.data.batch_size == 2
