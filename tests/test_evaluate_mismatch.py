"""Issue 25, item 8: `lc4 evaluate` never scores a mismatch silently.

* a prediction whose frame count differs from its ground truth is an error under strict, and is
  otherwise scored on the common first frames with a warning and a per-video flag;
* CDC (and E_warp) are n/a, flagged, for fewer than 2 frames: a prediction cut to one frame cannot
  score a perfect CDC;
* predictions without ground truth are listed in a warning (an error under strict);
* a damaged LPIPS / I3D / CLIP weight file gives one line naming the file, and the run goes on.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from lc4.evaluation import evaluate

SEQS = ("alpha", "beta")


def _flicker(seed: int, t: int = 10, h: int = 24, w: int = 24) -> np.ndarray:
    """A clip whose colours change every frame, so its CDC is clearly above 0."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(t):
        f = rng.integers(0, 60, (h, w, 3)).astype(np.int64) + (40 * (i % 3), 90, 160 - 30 * (i % 4))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _write(folder, video):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:05d}.png")


@pytest.fixture()
def sets(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    gt, full, cut = tmp_path / "gt", tmp_path / "full", tmp_path / "cut"
    for k, name in enumerate(SEQS):
        video = _flicker(k)
        _write(gt / name, video)
        _write(full / name, video)
        _write(cut / name, video[:1] if name == "alpha" else video)  # alpha cut to one frame
    return tmp_path


def test_one_frame_prediction_does_not_score_a_perfect_cdc(sets, caplog):
    honest = evaluate(sets / "full", sets / "gt", resolution=None, metrics="cdc,psnr")
    with caplog.at_level(logging.WARNING, logger="lc4.evaluation"):
        report = evaluate(sets / "cut", sets / "gt", resolution=None, metrics="cdc,psnr")
    alpha = report.per_video["alpha"]
    assert alpha["cdc"] is None and alpha["cdc_raw"] is None  # n/a, never 0.0
    assert alpha["frames"] == 1 and alpha["pred_frames"] == 1 and alpha["gt_frames"] == 10
    assert any("length mismatch" in f for f in alpha["flags"]) and any("cdc n/a" in f for f in alpha["flags"])
    # the set's CDC is the mean of the videos that have one, not pulled towards 0 by the cut video
    assert report.dataset["cdc"] == pytest.approx(honest.per_video["beta"]["cdc"])
    assert report.dataset["cdc"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("alpha: the prediction has 1 frame but the ground truth has 10" in w and "first 1" in w for w in warnings)
    assert any(w.startswith("cdc: n/a for 1 video(s) with fewer than 2 frames") and "alpha" in w for w in warnings)
    assert all(w in report.notes for w in warnings)


def test_every_video_cut_to_one_frame_leaves_cdc_na(sets, tmp_path):
    one = tmp_path / "one"
    for k, name in enumerate(SEQS):
        _write(one / name, _flicker(k)[:1])
    report = evaluate(one, sets / "gt", resolution=None, metrics="cdc")
    assert report.dataset["cdc"] is None and report.dataset["cdc_raw"] is None
    md = report.to_markdown()
    assert "**2 flagged**" in md and "| Flags |" in md
    row = next(line for line in md.splitlines() if line.startswith("| one |"))
    assert "n/a" in row and "0.000" not in row
    rows = list(csv.reader(report.to_csv().splitlines()))
    assert rows[0][-1] == "flags" and "cdc n/a" in rows[1][-1] and rows[-1][-1] == "2 flagged"
    data = json.loads(report.to_json())
    assert data["per_video"]["alpha"]["cdc"] is None and data["per_video"]["alpha"]["flags"]


def test_length_mismatch_is_an_error_under_strict(sets):
    with pytest.raises(ValueError, match=r"alpha: the prediction has 1 frame but the ground truth has 10 .*strict"):
        evaluate(sets / "cut", sets / "gt", resolution=None, metrics="cdc", strict=True)
    report = evaluate(sets / "full", sets / "gt", resolution=None, metrics="cdc", strict=True)
    assert all("flags" not in v for v in report.per_video.values())


def test_length_mismatch_of_video_files_is_an_error_under_strict(tmp_path, monkeypatch):
    io_mod = importlib.import_module("lc4.io")
    clips = {"alpha": _flicker(0, t=6), "beta": _flicker(1, t=6)}
    monkeypatch.setattr(io_mod, "read_frames", lambda path: clips[path.stem][: 2 if "pred" in str(path) else 6],
                        raising=False)
    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        for name in clips:
            (tmp_path / side / f"{name}.mp4").write_bytes(b"stand-in")
    with pytest.raises(ValueError, match="the prediction has 2 frames but the ground truth has 6"):
        evaluate(tmp_path / "pred", tmp_path / "gt", resolution=None, metrics="cdc", strict=True)
    report = evaluate(tmp_path / "pred", tmp_path / "gt", resolution=None, metrics="cdc")
    assert report.per_video["alpha"]["frames"] == 2 and report.per_video["alpha"]["cdc"] is not None


def test_predictions_without_ground_truth_are_listed(sets, caplog):
    _write(sets / "full" / "gamma", _flicker(2))
    _write(sets / "full" / "delta", _flicker(3))
    with caplog.at_level(logging.WARNING, logger="lc4.evaluation"):
        report = evaluate(sets / "full", sets / "gt", resolution=None, metrics="cdc")
    assert list(report.per_video) == list(SEQS)
    message = next(n for n in report.notes if "no ground truth" in n)
    assert message.startswith("2 prediction(s) have no ground truth") and "gamma" in message and "delta" in message
    assert any("no ground truth" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    with pytest.raises(ValueError, match=r"2 prediction\(s\) have no ground truth .*delta, gamma"):
        evaluate(sets / "full", sets / "gt", resolution=None, metrics="cdc", strict=True)
    # outside an explicit sequence list they are reported, not fatal
    listed = evaluate(sets / "full", sets / "gt", resolution=None, metrics="cdc", sequences=["beta"], strict=True)
    assert list(listed.per_video) == ["beta"] and any("not in the sequence list" in n for n in listed.notes)


def test_cli_strict_length_mismatch_is_one_line(sets, capsys, caplog):
    from lc4.cli import main

    status = main(["evaluate", "--pred", str(sets / "cut"), "--gt", str(sets / "gt"), "--output",
                   str(sets / "rep"), "--resolution", "native", "--metrics", "cdc", "--strict", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lc4: error:")]
    assert len(lines) == 1 and "the prediction has 1 frame but the ground truth has 10" in lines[0]
    assert not (sets / "rep.json").exists()
    with caplog.at_level(logging.WARNING, logger="lc4.evaluation"):  # the CLI logs to stderr as "lc4: ..."
        assert main(["evaluate", "--pred", str(sets / "cut"), "--gt", str(sets / "gt"), "--output",
                     str(sets / "rep"), "--resolution", "native", "--metrics", "cdc", "--quiet"]) == 0
    assert any("length mismatch" in r.getMessage() for r in caplog.records)
    assert "**1 flagged**" in capsys.readouterr().out
    assert json.loads((sets / "rep.json").read_text())["per_video"]["alpha"]["cdc"] is None


# ------------------------------------------------------------------------------- damaged weights


def test_damaged_weight_files_are_named_and_the_run_goes_on(sets, caplog):
    w = sets / "weights"
    w.mkdir()
    (w / "alexnet-owt-7be5be79.pth").write_bytes(b"<html>404 Not Found</html>")
    (w / "alex.pth").write_bytes(b"\x00" * 64)
    (w / "i3d_torchscript.pt").write_bytes(b"PK\x03\x04 truncated download")
    with caplog.at_level(logging.WARNING, logger="lc4.evaluation"):
        report = evaluate(sets / "full", sets / "gt", resolution=32, weights_dir=w, fvd_clip_frames=4)
    assert report.dataset["lpips"] is None and report.dataset["fvd"] is None
    assert report.dataset["psnr"] == float("inf") and report.dataset["cdc"] > 0  # the rest is scored
    lpips_note = next(n for n in report.notes if n.startswith("lpips: n/a"))
    fvd_note = next(n for n in report.notes if n.startswith("fvd: n/a"))
    assert str(w / "alexnet-owt-7be5be79.pth") in lpips_note and "damaged" in lpips_note
    assert str(w / "i3d_torchscript.pt") in fvd_note and "damaged" in fvd_note
    assert "\n" not in lpips_note + fvd_note
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "alexnet-owt-7be5be79.pth" in warned and "i3d_torchscript.pt" in warned


def test_damaged_weight_loaders_raise_one_line_naming_the_file(tmp_path):
    from lc4.metrics.fid import load_inception
    from lc4.metrics.fvd import load_i3d
    from lc4.metrics.lpips import load_lpips

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    heads = tmp_path / "alex.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, heads)  # readable, but the wrong content
    alex = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, alex)  # wrong shapes
    with pytest.raises(ValueError, match=f"LPIPS weight file {bad} is damaged"):
        load_lpips(backbone_path=bad, heads_path=heads)
    with pytest.raises(ValueError, match=f"LPIPS weight file {alex} does not fit"):
        load_lpips(backbone_path=alex, heads_path=heads)
    with pytest.raises(ValueError, match=f"FVD detector file {bad} is damaged or not a TorchScript archive"):
        load_i3d(bad)
    with pytest.raises(ValueError, match=f"FID detector file {bad} is damaged"):
        load_inception(bad)


def test_damaged_clip_folder_is_named(sets, tmp_path, caplog):
    from lc4.metrics.clip_score import CLIPScorer

    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "clip", ')
    with pytest.raises(ValueError, match=f"CLIP model folder {folder} cannot be loaded .*config.json"):
        CLIPScorer.from_pretrained(folder)
    prompts = {name: "a colourful square" for name in SEQS}
    with caplog.at_level(logging.WARNING, logger="lc4.evaluation"):
        report = evaluate(sets / "full", sets / "gt", prompts=prompts, resolution=None, metrics="clip_score,cdc",
                          clip_model=folder)
    assert report.dataset["clip_score"] is None
    assert any(n.startswith("clip_score: n/a") and str(folder) in n for n in report.notes)
