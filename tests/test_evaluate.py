"""The evaluation harness on a small generated dataset, the protocol helpers, report files,
the temporal plot and the CLI glue."""

import argparse
import csv
import importlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lc4.evaluation import (
    DAVIS30,
    VIDEVO20,
    discover_videos,
    evaluate,
    lab_lightness_grey,
    load_prompts,
    parse_metrics,
    plot_temporal,
    prepare_ground_truth,
    read_frame_folder,
    sequence_list,
)
from lc4.evaluation.cli import add_parser, run

SEQS = ("alpha", "beta", "gamma")


def _clip(seed, t=10, h=36, w=44):
    """Textured background with a moving coloured square."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (h, w, 3)).astype(np.uint8)
    frames = []
    for i in range(t):
        f = base.copy()
        f[4 + i : 14 + i, 3 + 2 * i : 13 + 2 * i] = (220, 40 + 10 * seed, 60)
        frames.append(f)
    return np.stack(frames)


def _write(folder, video, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:05d}.{ext}")


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    """DAVIS-layout JPEG ground truth; 'copy' = exact decoded GT as PNG; 'flicker' = GT + colour flicker."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights
    gt_root = tmp_path / "davis"
    for k, name in enumerate(SEQS):
        _write(gt_root / "JPEGImages" / "480p" / name, _clip(k), "jpg")
    for name in SEQS:
        decoded = read_frame_folder(gt_root / "JPEGImages" / "480p" / name)
        _write(tmp_path / "copy" / name, decoded)
        flick = decoded.astype(int)
        flick[1::2] += np.array([25, -10, 15])  # every frame changes colour, alternating
        flick[0::2] += np.array([-15, 12, 6])
        _write(tmp_path / "flicker" / name, np.clip(flick, 0, 255).astype(np.uint8))
    return tmp_path


def test_flicker_has_worse_cdc_and_copy_infinite_psnr_survives(dataset):
    copy = evaluate(dataset / "copy", dataset / "davis", resolution=32)
    flick = evaluate(dataset / "flicker", dataset / "davis", resolution=32)
    assert list(copy.per_video) == list(SEQS)
    assert flick.dataset["cdc"] > copy.dataset["cdc"] > 0
    assert all(flick.per_video[s]["cdc"] > copy.per_video[s]["cdc"] for s in SEQS)
    assert copy.dataset["psnr"] == float("inf")
    assert copy.dataset["psnr_capped"] == pytest.approx(100.0)
    assert copy.dataset["ssim"] == pytest.approx(1.0)
    assert np.isfinite(flick.dataset["psnr"]) and flick.dataset["psnr"] < 100
    assert flick.dataset["cdc"] == pytest.approx(1000 * flick.dataset["cdc_raw"])
    # missing weights are n/a with a note naming the files, never 0
    assert copy.dataset["lpips"] is None and copy.dataset["fvd"] is None
    notes = " ".join(copy.notes)
    assert "alexnet-owt-7be5be79.pth" in notes and "i3d_torchscript.pt" in notes


def test_report_files(dataset):
    report = evaluate(dataset / "copy", dataset / "davis", resolution=32, name="Copy")
    paths = report.save(dataset / "out" / "copy_report")
    data = json.loads(paths["json"].read_text())
    assert data["dataset"]["psnr"] == "inf" and data["dataset"]["lpips"] is None
    assert data["conventions"]["resolution"].startswith("32x32")
    rows = list(csv.reader(paths["csv"].read_text().splitlines()))
    assert rows[0][:8] == ["video", "frames", "colorfulness", "psnr", "psnr_capped", "ssim", "lpips", "fvd"]
    assert [r[0] for r in rows[1:]] == [*SEQS, "mean"] and rows[-1][6] == "n/a" and rows[-1][3] == "inf"
    md = paths["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    order = [header.index(k) for k in ("Color.", "PSNR", "SSIM", "LPIPS", "FVD", "CDC")]
    assert order == sorted(order)
    assert "| Copy |" in md and "n/a" in md
    # an existing folder gets report.* inside it
    assert report.save(dataset / "out")["md"].name == "report.md"


def test_with_weights_lpips_and_fvd_are_numbers(dataset):
    w = dataset / "weights"
    w.mkdir()
    g = torch.Generator().manual_seed(0)
    convs = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
    alex = {}
    for i, (o, c, k) in convs.items():
        alex[f"features.{i}.weight"] = torch.randn(o, c, k, k, generator=g) * 0.05
        alex[f"features.{i}.bias"] = torch.zeros(o)
    torch.save(alex, w / "alexnet-owt-7be5be79.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, w / "alex.pth")

    class FakeI3D(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
            y = x.float() / 255.0
            return torch.cat([y.mean(dim=(2, 3, 4)), y.std(dim=(2, 3, 4))], dim=1)

    torch.jit.script(FakeI3D()).save(str(w / "i3d_torchscript.pt"))
    kw = dict(resolution=64, weights_dir=w, fvd_clip_frames=4)
    copy = evaluate(dataset / "copy", dataset / "davis", **kw)
    flick = evaluate(dataset / "flicker", dataset / "davis", **kw)
    assert copy.dataset["lpips"] == 0.0 and flick.dataset["lpips"] > 0
    assert copy.dataset["fvd"] == pytest.approx(0.0, abs=1e-9) and flick.dataset["fvd"] > 1e-6
    assert any("rank-deficient" in n for n in copy.notes)


def test_matching_restrictions_and_errors(dataset, tmp_path):
    partial = tmp_path / "partial"
    for name in SEQS[:2]:
        _write(partial / name, read_frame_folder(dataset / "copy" / name))
    report = evaluate(partial, dataset / "davis", resolution=32, metrics=["cdc"])
    assert list(report.per_video) == list(SEQS[:2]) and any("gamma" in n for n in report.notes)
    with pytest.raises(ValueError, match="missing from the predictions"):
        evaluate(partial, dataset / "davis", resolution=32, metrics="cdc", strict=True)
    only = evaluate(dataset / "copy", dataset / "davis", resolution=32, metrics="psnr", sequences=["beta"])
    assert list(only.per_video) == ["beta"] and only.metrics == ["psnr"]
    with pytest.raises(ValueError, match="no videos to evaluate"):
        evaluate(dataset / "copy", dataset / "davis", metrics="cdc", sequences="davis30")
    with pytest.raises(FileNotFoundError, match="not found"):
        evaluate(tmp_path / "nope", dataset / "davis")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos found"):
        evaluate(tmp_path / "empty", dataset / "davis")
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(dataset / "copy", dataset / "davis", metrics=["psnr", "bleu"])


def test_frame_count_and_size_mismatch(dataset, tmp_path):
    short = tmp_path / "short"
    for name in SEQS:
        _write(short / name, read_frame_folder(dataset / "copy" / name)[:7])
    report = evaluate(short, dataset / "davis", resolution=32, metrics="psnr")
    assert report.per_video["alpha"]["frames"] == 7 and report.dataset["psnr"] == float("inf")
    assert any("first 7" in n for n in report.notes)
    small = tmp_path / "small"
    _write(small / "alpha", _clip(0, h=20, w=20))
    with pytest.raises(ValueError, match="pass a resolution"):
        evaluate(small, dataset / "davis", resolution=None, metrics="psnr")


def test_prompts_and_clip_score_without_model(dataset, tmp_path):
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"alpha": "a red square", "beta": "a brown field"}))
    cs = tmp_path / "p.csv"
    cs.write_text('name,prompt\nalpha,a red square\nbeta,"a brown, dry field"\n')
    assert load_prompts(js)["beta"] == "a brown field"
    assert load_prompts(cs) == {"alpha": "a red square", "beta": "a brown, dry field"}
    bad = tmp_path / "bad.csv"
    bad.write_text("alpha\n")
    with pytest.raises(ValueError, match="2 columns"):
        load_prompts(bad)
    report = evaluate(dataset / "copy", dataset / "davis", prompts=js, resolution=32, metrics=None)
    assert "clip_score" in report.metrics and report.dataset["clip_score"] is None
    assert any("clip_score: n/a" in n for n in report.notes)


def test_parse_metrics():
    assert parse_metrics(None) == ["colorfulness", "psnr", "ssim", "lpips", "fvd", "cdc"]
    assert parse_metrics("CDC, color") == ["colorfulness", "cdc"]
    assert parse_metrics(["all"])[-3:] == ["fid", "clip_score", "warp_error"]


def test_video_files_go_through_lc4_io(tmp_path, monkeypatch):
    io_mod = importlib.import_module("lc4.io")
    fake = _clip(5, t=4)
    monkeypatch.setattr(io_mod, "read_frames", lambda path: fake, raising=False)
    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "alpha.mp4").write_bytes(b"not really a video")
    found = discover_videos(tmp_path / "vids")
    assert found["alpha"].kind == "file"
    assert np.array_equal(found["alpha"].read(), fake)
    assert found["alpha"].read(16).shape == (4, 16, 16, 3)


def test_protocol_lists(tmp_path):
    assert len(DAVIS30) == 30 == len(set(DAVIS30)) and "blackswan" in DAVIS30
    assert len(VIDEVO20) == 20 == len(set(VIDEVO20)) and "SkateboarderTableJump" in VIDEVO20
    assert sequence_list("Videvo20") == VIDEVO20
    lst = tmp_path / "l.txt"
    lst.write_text("a\n\n# comment\nb\n")
    assert sequence_list(lst) == ("a", "b")
    with pytest.raises(FileNotFoundError):
        sequence_list(tmp_path / "none.txt")


def test_prepare_ground_truth(dataset):
    dst = dataset / "prepared"
    done = prepare_ground_truth(dataset / "davis", dst, resolution=32)
    assert done == list(SEQS)
    gt = read_frame_folder(dst / "gt" / "beta")
    assert gt.shape == (10, 32, 32, 3) and sorted(p.suffix for p in (dst / "gt" / "beta").iterdir()) == [".png"] * 10
    with Image.open(dst / "gray" / "beta" / "00003.png") as im:
        assert im.mode == "L"
        grey = np.asarray(im)
    np.testing.assert_array_equal(grey, lab_lightness_grey(gt[3]))
    # neutral colours: L* grey equals the input value to rounding
    flat = np.full((2, 2, 3), 128, np.uint8)
    assert abs(int(lab_lightness_grey(flat)[0, 0]) - round(53.585 * 2.55)) <= 1
    mtime = (dst / "gt" / "beta" / "00000.png").stat().st_mtime_ns
    assert prepare_ground_truth(dataset / "davis", dst, resolution=32, sequences=["beta"]) == ["beta"]
    assert (dst / "gt" / "beta" / "00000.png").stat().st_mtime_ns == mtime  # resumed, not rewritten
    with pytest.raises(FileNotFoundError, match="not in"):
        prepare_ground_truth(dataset / "davis", dst, sequences="davis30")
    with pytest.raises(ValueError, match="outside"):
        prepare_ground_truth(dataset / "davis", dataset / "davis" / "out")


def test_plot_temporal(dataset):
    gt = read_frame_folder(dataset / "copy" / "alpha")
    out = plot_temporal({"ground truth": gt, "flicker": read_frame_folder(dataset / "flicker" / "alpha")}, dataset / "p" / "t.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_temporal({}, dataset / "x.png")


def test_cli(dataset, capsys):
    parser = argparse.ArgumentParser(prog="lc4")
    add_parser(parser.add_subparsers(dest="command"))
    out = dataset / "cli" / "rep"
    args = parser.parse_args(
        ["evaluate", "--pred", str(dataset / "flicker"), "--gt", str(dataset / "davis"), "--output", str(out),
         "--resolution", "32", "--metrics", "psnr", "cdc", "--quiet"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert (dataset / "cli" / "rep.json").is_file() and (dataset / "cli" / "rep.csv").is_file()
    assert "CDC" in capsys.readouterr().out
    bad = parser.parse_args(["evaluate", "--pred", str(dataset / "nope"), "--gt", str(dataset / "davis"), "--output", str(out)])
    with pytest.raises(FileNotFoundError, match="--pred"):
        run(bad)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--pred", "a", "--gt", "b", "--output", "c", "--resolution", "-3"])
