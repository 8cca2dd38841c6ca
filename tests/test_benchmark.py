"""`lc4 benchmark`: sharding over DDP processes, resume, the protocol's input/output, bad input.

A tiny DAVIS-layout set (4 sequences x 6 frames, 32-48 px), the random tiny model, 2 steps at
working resolution 32, ground truth at 64x64.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lc4.cli import main as lc4_main
from lc4.evaluation.benchmark import (BenchmarkLayout, BenchmarkSettings, check_settings, is_done,
                                      lightness_to_grey_rgb, pending_sequences, plan_prompts, read_log,
                                      recover_log, remove_partials, save_settings)
from lc4.evaluation.discover import read_frame_folder
from lc4.evaluation.protocol import lab_lightness_grey

REPO = Path(__file__).resolve().parents[1]
SIZES = {"bear": (32, 40), "cows": (48, 32), "dog": (40, 48), "goat": (32, 32)}
FRAMES = 6
EVAL = 64
FAST = ["--model", "random-tiny", "--accelerator", "cpu", "--steps", "2", "--resolution", "32",
        "--eval-resolution", str(EVAL)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _lightness(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb)[..., 0]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, Path]:
    """DAVIS layout JPEGImages/480p/<seq>/*.jpg with moving colour gradients, and a prompts file."""
    root = tmp_path_factory.mktemp("set")
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        folder = root / "davis" / "JPEGImages" / "480p" / name
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, 3)
        y, x = np.mgrid[0:h, 0:w]
        for t in range(FRAMES):
            img = np.stack([(x * 5 + t * 9 + base[0]) % 256, (y * 4 + base[1]) % 256, (x + y + base[2]) % 256], -1)
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{t:05d}.jpg", quality=95)
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps({n: f"a {n} on a green meadow" for n in SIZES} | {"not-in-set": "ignored"}))
    return root / "davis", prompts


def _cli(args: list[str], capsys=None) -> tuple[int, str]:
    rc = lc4_main(["benchmark", *args])
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def _snapshot(folder: Path) -> dict[str, int]:
    """mtime (ns) of a folder and of each file in it."""
    return {p.name: p.stat().st_mtime_ns for p in [folder, *sorted(folder.iterdir())]}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------- pure parts


def test_grey_input_has_the_ground_truth_lightness():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    stored = lab_lightness_grey(frames)  # what prepare_ground_truth writes to gray/
    grey = lightness_to_grey_rgb(stored)
    assert grey.shape == frames.shape and grey.dtype == np.uint8
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    truth = rgb2lab(frames)[..., 0]
    assert np.abs(rgb2lab(grey)[..., 0] - truth).max() < 0.5  # L* step 1/2.55 plus uint8 rounding
    from lc4.color import to_grey  # the pipeline's own grey of the colour frames: at most one level apart

    assert np.abs(to_grey(frames).astype(int) - grey.astype(int)).max() <= 1
    naive = np.repeat(stored[..., None], 3, axis=-1)  # the stored value read as an RGB grey
    assert np.abs(rgb2lab(naive)[..., 0] - truth).max() > 2.0  # why decoding is needed
    with pytest.raises(ValueError, match="uint8"):
        lightness_to_grey_rgb(stored.astype(np.float32))


def test_plan_prompts(tiny_set, tmp_path):
    dataset, prompts = tiny_set
    assert plan_prompts(dataset, prompts) == {n: f"a {n} on a green meadow" for n in SIZES}
    partial = tmp_path / "p.csv"
    partial.write_text("name,prompt\nbear,a brown bear\ngoat,a white goat\n")
    with pytest.raises(ValueError, match=r"2 of 4 sequence\(s\) have no prompt.*cows, dog"):
        plan_prompts(dataset, partial)
    planned = plan_prompts(dataset, partial, default_prompt="a colourful photo")
    assert planned == {"bear": "a brown bear", "cows": "a colourful photo", "dog": "a colourful photo",
                       "goat": "a white goat"}
    assert list(plan_prompts(dataset, partial, sequences=["goat", "bear"])) == ["goat", "bear"]
    with pytest.raises(FileNotFoundError, match="zebra"):
        plan_prompts(dataset, prompts, sequences=["bear", "zebra"])
    with pytest.raises(ValueError, match="must not be empty"):
        plan_prompts(dataset, partial, default_prompt="  ")


def test_resume_state(tmp_path):
    layout = BenchmarkLayout(tmp_path / "out")
    settings = BenchmarkSettings(model="random-tiny", steps=2, resolution=32, eval_resolution=64)
    prompts = {"a": "red", "b": "blue"}
    check_settings(layout, settings, prompts)  # nothing saved yet
    save_settings(layout, settings, prompts)
    check_settings(layout, settings, prompts)
    with pytest.raises(ValueError, match=r"steps 3 \(saved: 2\)"):
        check_settings(layout, BenchmarkSettings(model="random-tiny", steps=3, resolution=32, eval_resolution=64),
                       prompts)
    check_settings(layout, settings, {"a": "green", "b": "blue"})  # 'a' not done yet: a new prompt is fine
    (layout.pred / "a").mkdir(parents=True)
    assert not is_done(layout, "a")  # an empty folder is not a result
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(layout.pred / "a" / "00000.png")
    assert is_done(layout, "a") and pending_sequences(layout, ["a", "b"]) == ["b"]
    with pytest.raises(ValueError, match="prompt of 1 finished sequence"):
        check_settings(layout, settings, {"a": "green", "b": "blue"})
    stale = layout.pred / ".b.k3j2.partial"
    stale.mkdir()
    (layout.pred / ".keep").touch()  # hidden, but not a temporary: left alone
    assert remove_partials(layout.pred) == [stale]
    assert not stale.exists() and (layout.pred / ".keep").exists() and is_done(layout, "a")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, message", [
    ("no-dataset", "--dataset folder not found"),
    ("no-prompts-file", "prompts file not found"),
    ("missing-prompt", "have no prompt"),
    ("unknown-model", "model not found: no-such-model"),
    ("output-in-dataset", "inside --dataset"),
    ("bad-resolution", "multiple of 8"),
])
def test_bad_input_is_one_line(case, message, tiny_set, tmp_path, capsys):
    dataset, prompts = tiny_set
    args = {"--dataset": str(dataset), "--prompts": str(prompts), "--output": str(tmp_path / "out")}
    extra: list[str] = []
    if case == "no-dataset":
        args["--dataset"] = str(tmp_path / "nowhere")
    elif case == "no-prompts-file":
        args["--prompts"] = str(tmp_path / "nothing.json")
    elif case == "missing-prompt":
        (tmp_path / "few.json").write_text(json.dumps({"bear": "a bear"}))
        args["--prompts"] = str(tmp_path / "few.json")
    elif case == "unknown-model":
        extra = ["--model", "no-such-model"]
    elif case == "output-in-dataset":
        args["--output"] = str(dataset / "results")
    elif case == "bad-resolution":
        extra = ["--resolution", "30"]
    argv = [*FAST, *[x for kv in args.items() for x in kv], *extra]
    rc, err = _cli(argv, capsys)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lc4: error: ") and message in lines[0], err
    assert not (tmp_path / "out" / "pred").exists()


# --------------------------------------------------------------------------- runs


@pytest.mark.slow
def test_ddp_two_processes_colorize_each_video_once(tiny_set, tmp_path):
    """Through the real CLI: 2 CPU processes (DDP, gloo) share the set; rank 0 writes the report."""
    dataset, prompts = tiny_set
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lc4.cli", "benchmark", *FAST, "--devices", "2", "--dataset", str(dataset),
           "--prompts", str(prompts), "--output", str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    layout = BenchmarkLayout(out)
    records = {n: read_log(layout, n) for n in SIZES}
    assert all(len(r) == 1 for r in records.values()), records  # each video colorized exactly once
    assert {r[0]["rank"] for r in records.values()} == {0, 1}  # ...and the work was shared
    assert all(r[0]["world_size"] == 2 and r[0]["frames"] == FRAMES for r in records.values())
    report = json.loads((out / "report.json").read_text())
    assert set(report["per_video"]) == set(SIZES)
    assert all(v["frames"] == FRAMES for v in report["per_video"].values())
    assert (out / "report.md").is_file() and (out / "report.csv").read_text().count("\n") == len(SIZES) + 2
    print(f"ddp benchmark run: {seconds:.1f} s")

    # the result is the pipeline's on the documented input: the grey of the protocol's ground truth
    from lc4.colorize_cli import load_pipeline

    pipe = load_pipeline("random-tiny", "cpu", "float32", "DDIMScheduler")
    for name in ("bear", "cows"):
        pred = read_frame_folder(out / "pred" / name)
        gt = read_frame_folder(out / "gt" / name)
        assert pred.shape == gt.shape == (FRAMES, EVAL, EVAL, 3)
        grey = lightness_to_grey_rgb(read_frame_folder(out / "gray" / name)[..., 0])
        direct = pipe(grey, f"a {name} on a green meadow", num_inference_steps=2, guidance_scale=4.5, seed=0,
                      resolution=32, progress=False).frames
        diff = np.abs(direct.astype(int) - pred.astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
        # the output keeps the ground truth's lightness (chroma is what the model predicts)
        assert np.abs(_lightness(pred) - _lightness(gt)).max() < 1.0


def test_resume_after_stopping_early(tiny_set, tmp_path, capsys):
    """--max-sequences stops after k videos; the next run skips them and writes the full report."""
    dataset, prompts = tiny_set
    out = tmp_path / "out"
    argv = [*FAST, "--quiet", "--dataset", str(dataset), "--prompts", str(prompts), "--output", str(out)]
    assert _cli([*argv, "--max-sequences", "2"], capsys)[0] == 0
    layout = BenchmarkLayout(out)
    done = [n for n in SIZES if is_done(layout, n)]
    assert done == ["bear", "cows"] and not (out / "report.json").exists()
    before = {n: _snapshot(out / "pred" / n) for n in done}
    (out / "pred" / ".dog.x1y2.partial").mkdir()  # what a kill during a write leaves behind
    Image.fromarray(np.zeros((EVAL, EVAL, 3), np.uint8)).save(out / "pred" / ".dog.x1y2.partial" / "00000.png")

    started = time.perf_counter()
    assert _cli(argv, capsys)[0] == 0
    print(f"resumed run (2 of 4 videos): {time.perf_counter() - started:.1f} s")
    assert {n: _snapshot(out / "pred" / n) for n in done} == before  # not recomputed
    assert all(len(read_log(layout, n)) == 1 for n in SIZES)
    assert sorted(p.name for p in (out / "pred").iterdir()) == sorted(SIZES)  # the stale temporary is gone
    report = json.loads((out / "report.json").read_text())
    assert list(report["per_video"]) == list(SIZES)

    # a finished set: nothing recomputed, the report is rebuilt with other metrics
    assert _cli([*argv, "--metrics", "psnr", "cdc"], capsys)[0] == 0
    assert all(len(read_log(layout, n)) == 1 for n in SIZES)
    assert json.loads((out / "report.json").read_text())["metrics"] == ["psnr", "cdc"]
    # other settings into the same output are refused, --overwrite starts again
    rc, err = _cli([*argv, "--seed", "1"], capsys)
    assert rc == 1 and "seed 1 (saved: 0)" in err
    assert _cli([*argv, "--seed", "1", "--overwrite", "--max-sequences", "1"], capsys)[0] == 0
    assert [n for n in SIZES if is_done(layout, n)] == ["bear"] and not (out / "report.json").exists()


@pytest.mark.slow
def test_resume_after_kill(tiny_set, tmp_path, capsys):
    """SIGKILL mid-run leaves only complete result folders; the rerun does only what is missing."""
    dataset, prompts = tiny_set
    out = tmp_path / "out"
    argv = ["--model", "random-tiny", "--accelerator", "cpu", "--steps", "20", "--resolution", "32",
            "--eval-resolution", str(EVAL), "--quiet", "--dataset", str(dataset), "--prompts", str(prompts),
            "--output", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "lc4.cli", "benchmark", *argv], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    layout = BenchmarkLayout(out)
    try:
        deadline = time.monotonic() + 240
        while not any(is_done(layout, n) for n in SIZES if (out / "pred").is_dir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the first video never appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    visible = [p for p in (out / "pred").iterdir() if not p.name.startswith(".")]
    assert visible and all(len(list(p.glob("*.png"))) == FRAMES for p in visible)  # never a half folder
    finished = {p.name: _snapshot(p) for p in visible}

    assert _cli(argv, capsys)[0] == 0
    assert {n: _snapshot(out / "pred" / n) for n in finished} == finished
    assert all(len(read_log(layout, n)) == 1 for n in SIZES)
    assert set(json.loads((out / "report.json").read_text())["per_video"]) == set(SIZES)
    assert not [p for p in (out / "pred").iterdir() if p.name.startswith(".")]


class _Killed(BaseException):
    """Stands for a SIGKILL at one exact point (a BaseException, so nothing on the way catches it)."""


def test_a_kill_between_a_result_and_its_log_record_loses_no_record(tiny_set, tmp_path, capsys, monkeypatch):
    """The window the SIGKILL test hits only by chance: the result folder is renamed into pred/, the
    process dies before the log is written. The rerun must not colorize it again and must still log
    it once (its record was journalled before the rename)."""
    import lc4.evaluation.benchmark as bench

    dataset, prompts = tiny_set
    out = tmp_path / "out"
    argv = [*FAST, "--quiet", "--dataset", str(dataset), "--prompts", str(prompts), "--output", str(out)]
    layout = BenchmarkLayout(out)
    real_append = bench._append_log

    def die_after_the_rename(layout_, name, record):
        assert is_done(layout_, name)  # the folder exists: this is the window
        raise _Killed

    monkeypatch.setattr(bench, "_append_log", die_after_the_rename)
    with pytest.raises(_Killed):
        _cli(argv, capsys)
    done = [n for n in SIZES if is_done(layout, n)]
    assert len(done) == 1 and not read_log(layout, done[0])  # a result without its log record
    finished = _snapshot(out / "pred" / done[0])
    monkeypatch.setattr(bench, "_append_log", real_append)
    shutil.copytree(out, tmp_path / "again")  # --overwrite accepts the journal as lc4's own
    assert _cli([*argv[:-1], str(tmp_path / "again"), "--overwrite"], capsys)[0] == 0

    assert _cli(argv, capsys)[0] == 0
    assert _snapshot(out / "pred" / done[0]) == finished  # not colorized again
    logs = {n: read_log(layout, n) for n in SIZES}
    assert all(len(r) == 1 for r in logs.values()), logs
    assert logs[done[0]][0]["frames"] == FRAMES and logs[done[0]][0]["seconds"] > 0
    assert not list((out / "log").glob(".*"))  # no journal left
    per_video = json.loads((out / "report.json").read_text())["per_video"]
    assert per_video[done[0]]["seconds"] == logs[done[0]][0]["seconds"]


def test_recover_log_keeps_a_done_result_once_and_drops_the_rest(tmp_path):
    """Journals: a done result's record is logged once (also when the kill came after the log write,
    before the journal was removed); a result never renamed, or a damaged journal, leaves no record."""
    layout = BenchmarkLayout(tmp_path)
    (layout.pred / "bear").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(layout.pred / "bear" / "00000.png")
    layout.log.mkdir()
    record = {"sequence": "bear", "id": "a1", "frames": 1, "seconds": 0.5}
    for name, rec in (("bear", record), ("cows", {**record, "sequence": "cows", "id": "b2"})):
        (layout.log / f".{name}.pending.json").write_text(json.dumps(rec))
    (layout.log / ".dog.pending.json").write_text('{"sequence": "do')  # cut off mid-write
    assert recover_log(layout) == ["bear"]
    assert read_log(layout, "bear") == [record] and read_log(layout, "cows") == []
    assert not list(layout.log.glob(".*"))

    (layout.log / ".bear.pending.json").write_text(json.dumps(record))  # logged, journal not yet removed
    assert recover_log(layout) == ["bear"]
    assert read_log(layout, "bear") == [record]  # not twice
    assert recover_log(BenchmarkLayout(tmp_path / "new")) == []  # no log folder yet


# --------------------------------------------------------------------------- --overwrite deletes only lc4's own


def _frames(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("where", ["gt", "root"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_overwrite_refuses_a_dataset_inside_the_output(where, overwrite, tiny_set, tmp_path, capsys):
    """`--dataset out/gt --output out --overwrite` used to delete the dataset; now refused before any work."""
    dataset, prompts = tiny_set
    out = tmp_path / "out"
    inside = out / "gt" if where == "gt" else out / "davis"
    shutil.copytree(dataset, inside)
    before = _tree(out)
    argv = [*FAST, "--quiet", "--dataset", str(inside), "--prompts", str(prompts), "--output", str(out)]
    rc, err = _cli([*argv, *(["--overwrite"] if overwrite else [])], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1 and "is inside --output" in lines[0], err
    assert _tree(out) == before  # the dataset is untouched, nothing was written


@pytest.mark.parametrize("case, message", [
    ("file-in-pred", "holds notes.txt, which lc4 did not write"),
    ("file-in-sequence", "holds holiday.jpg, which lc4 did not write"),
    ("folder-in-gt", "holds mine, which lc4 did not write"),
    ("file-in-log", "holds diary.txt, which lc4 did not write"),
    ("gray-is-a-link", "is a symbolic link"),
    ("prompts-in-gray", "which lc4 benchmark writes"),
])
def test_overwrite_refuses_folders_holding_other_files(case, message, tiny_set, tmp_path, capsys):
    """--overwrite deletes pred/ gt/ gray/ log/ only when every entry is lc4's; otherwise one line, nothing deleted."""
    dataset, prompts = tiny_set
    out = tmp_path / "out"
    layout = BenchmarkLayout(out)
    for name in ("bear", "cows"):  # what an earlier run left: lc4's own
        _frames(layout.pred / name), _frames(layout.gt / name), _frames(layout.gray / name)
    layout.log.mkdir()
    (layout.log / "bear.jsonl").write_text("{}\n")
    (out / "report.md").write_text("| |\n")
    if case == "file-in-pred":
        (layout.pred / "notes.txt").write_text("mine")
    elif case == "file-in-sequence":
        (layout.pred / "bear" / "holiday.jpg").write_bytes(b"jpeg")
    elif case == "folder-in-gt":
        _frames(layout.gt / "cows" / "mine")
    elif case == "file-in-log":
        (layout.log / "diary.txt").write_text("dear diary")
    elif case == "gray-is-a-link":
        elsewhere = _frames(tmp_path / "elsewhere" / "bear")
        shutil.rmtree(layout.gray)
        layout.gray.symlink_to(elsewhere.parent, target_is_directory=True)
    elif case == "prompts-in-gray":
        (layout.gray / "prompts.json").write_text(prompts.read_text())
        prompts = layout.gray / "prompts.json"
    before = _tree(out)
    argv = [*FAST, "--quiet", "--dataset", str(dataset), "--prompts", str(prompts), "--output", str(out)]
    rc, err = _cli([*argv, "--overwrite"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("lc4: error: ") and message in lines[0], err
    assert _tree(out) == before
    if case == "gray-is-a-link":
        assert _tree(tmp_path / "elsewhere") == ["bear", "bear/00000.png", "bear/00001.png"]
