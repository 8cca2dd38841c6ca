"""`lc4 colorize` / `python infer.py` end to end: real processes on generated media, output formats,
batch mode, resume, and one-line errors for every bad input.

Real-process runs cost a few seconds each (importing torch and diffusers); the error table runs
in-process for speed and again through real processes in a slow-marked test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from lc4.cli import main as lc4_main
from lc4.color import to_grey
from lc4.io import probe, read_frames

ROOT = Path(__file__).resolve().parents[1]
FPS = Fraction(25)
FAST = ["--model", "random-tiny", "--steps", "2", "--resolution", "32", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- media


def grey_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.stack([((xx * 4 + yy * 2 + 7 * i) % 200 + 28) for i in range(n)]).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def write_mp4(path: Path, frames: np.ndarray, audio: bool = True, container: str | None = None) -> Path:
    """H.264 video (+ AAC 440 Hz sine, as long as the video) with PyAV."""
    n, h, w, _ = frames.shape
    with av.open(str(path), "w", format=container) as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt, v.options = w, h, "yuv420p", {"crf": "10"}
        a = c.add_stream("aac", rate=48000, layout="stereo") if audio else None
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            c.mux(v.encode(vf))
        c.mux(v.encode(None))
        if a is not None:
            total = int(n / float(FPS) * 48000)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / 48000)).astype(np.float32)
            for k in range(0, total, 1024):
                chunk = tone[k : k + 1024]
                af = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, k
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def luminance(path: Path) -> np.ndarray:
    """The Y channel compared end to end: the luminance of the decoded RGB frames as a grey level,
    0..255 (sRGB-encoded CIE Y = the Lab-L grey the model sees), (T, H, W) uint8."""
    from lc4.color import to_grey

    return to_grey(read_frames(path))[..., 0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def run_cli(*args: str, entry: str = "lc4", cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lc4.cli", "colorize"] if entry == "lc4" else [sys.executable, str(ROOT / "infer.py")]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd or ROOT,
                          timeout=300)


def png_folder(path: Path) -> np.ndarray:
    return read_frames(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    frames = grey_frames(12)
    return {"dir": d, "mp4": write_mp4(d / "grey.mp4", frames), "frames": frames}


ARCHIVAL = ["--pixel-format", "yuv444p", "--crf", "10"]


@pytest.fixture(scope="module")
def mp4_run(media) -> dict[str, Path]:
    """One real `lc4 colorize` run to MP4 (shared by the tests that inspect it)."""
    out = media["dir"] / "out.mp4"
    done = run_cli(media["mp4"], "--prompt", "a red car", "--output", out, *FAST, *ARCHIVAL)
    assert done.returncode == 0, done.stderr
    return {"out": out, "stdout": done.stdout, "stderr": done.stderr}


# --------------------------------------------------------------------------- end to end


def test_mp4_keeps_frames_rate_size_audio_and_luminance(media, mp4_run):
    src, out = probe(media["mp4"]), probe(mp4_run["out"])
    assert (out.num_frames, out.frame_rate, out.width, out.height) == (12, FPS, 48, 32)
    assert (src.num_frames, src.width, src.height) == (12, 48, 32)
    assert out.has_audio and out.audio_codec == "aac"
    with av.open(str(mp4_run["out"])) as c:
        audio = c.streams.audio[0]
        assert abs(float(audio.duration * audio.time_base) - 12 / 25) < 0.05
    # luminance recombination: the input's own luminance comes back (measured 42 dB; the loss is
    # H.264's: the random model's per-pixel, fully saturated chroma is a worst case for the codec)
    assert psnr(luminance(media["mp4"]), luminance(mp4_run["out"])) >= 40.0
    assert "wrote" in mp4_run["stdout"] and "Traceback" not in mp4_run["stderr"]


def test_default_mp4_settings_and_raw_output_luminance(media, tmp_path):
    """Defaults (4:2:0, crf 18) keep the luminance within codec loss (measured 36.7 dB with this
    random model); --raw (no recombination) shows what the decoder alone would give."""
    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", *FAST]
    assert lc4_main([*args, "--output", str(tmp_path / "default.mp4")]) == 0
    assert lc4_main([*args, "--output", str(tmp_path / "raw.mp4"), "--raw"]) == 0
    reference = luminance(media["mp4"])
    assert psnr(reference, luminance(tmp_path / "default.mp4")) >= 35.0
    assert psnr(reference, luminance(tmp_path / "raw.mp4")) < 25.0


def test_infer_py_with_the_same_arguments_gives_the_same_video(media, mp4_run):
    out = media["dir"] / "infer_out.mp4"
    done = run_cli(media["mp4"], "--prompt", "a red car", "--output", out, *FAST, *ARCHIVAL, "--format", "both",
                   entry="infer")
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_frames(out), read_frames(mp4_run["out"]))
    pngs = png_folder(media["dir"] / "infer_out")  # --format both: OUT.mp4 and OUT/
    assert pngs.shape == (12, 32, 48, 3)
    assert psnr(pngs, read_frames(out)) > 30  # the same frames, before and after H.264 (measured 34 dB)
    assert psnr(luminance(media["mp4"]), to_grey(pngs)[..., 0]) > 50  # lossless: only uint8 rounding
    # --format png (in-process) writes exactly the PNG frames of the 'both' run
    folder = media["dir"] / "png_only"
    assert lc4_main(["colorize", str(media["mp4"]), "--prompt", "a red car", "--output", str(folder), *FAST,
                     "--format", "png"]) == 0
    assert np.array_equal(png_folder(folder), pngs)


def test_single_image_in_single_image_out(tmp_path):
    from PIL import Image

    Image.fromarray(grey_frames(1, 40, 24)[0]).save(tmp_path / "photo.png")
    assert lc4_main(["colorize", str(tmp_path / "photo.png"), "--prompt", "a red car", "--output",
                     str(tmp_path / "colour.png"), *FAST]) == 0
    with Image.open(tmp_path / "colour.png") as im:
        assert im.size == (24, 40) and im.mode == "RGB"


@pytest.mark.slow
def test_batch_mode_json_real_process_and_csv(tmp_path, media):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "bear.mp4", grey_frames(10), audio=False)
    from lc4.io import write_png_folder

    write_png_folder(grey_frames(9, 24, 40), videos / "swan")
    table = tmp_path / "prompts.json"
    table.write_text(json.dumps({"bear": "a brown bear", "swan": "a white swan", "ghost": "nothing"}))
    done = run_cli(videos, "--prompts", table, "--output", tmp_path / "out", *FAST)
    assert done.returncode == 0, done.stderr
    assert probe(tmp_path / "out" / "bear.mp4").num_frames == 10
    assert probe(tmp_path / "out" / "swan.mp4").num_frames == 9
    assert "ghost: no video or frame folder" in done.stderr and "Traceback" not in done.stderr
    # CSV, PNG output, in-process; an existing output is skipped, not redone
    csv = tmp_path / "prompts.csv"
    csv.write_text("name,prompt\nbear.mp4,a brown bear\nswan,\"a white swan, on a lake\"\n")
    assert lc4_main(["colorize", str(videos), "--prompts", str(csv), "--output", str(tmp_path / "png"), *FAST,
                     "--format", "png"]) == 0
    assert png_folder(tmp_path / "png" / "bear").shape == (10, 32, 48, 3)
    assert png_folder(tmp_path / "png" / "swan").shape == (9, 24, 40, 3)
    before = (tmp_path / "png" / "bear" / "00000.png").stat().st_mtime_ns
    assert lc4_main(["colorize", str(videos), "--prompts", str(csv), "--output", str(tmp_path / "png"), *FAST,
                     "--format", "png"]) == 0
    assert (tmp_path / "png" / "bear" / "00000.png").stat().st_mtime_ns == before


# --------------------------------------------------------------------------- resume


def test_interrupted_cli_run_resumes_from_its_saved_state(tmp_path, media, monkeypatch, caplog):
    import lc4.colorize_cli as cc

    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", *FAST, "--steps", "4", "--format", "png"]
    assert lc4_main([*args, "--output", str(tmp_path / "full")]) == 0
    full = png_folder(tmp_path / "full")

    real_saver = cc.state_saver

    def interrupting_saver(state_file, key):
        save = real_saver(state_file, key)

        def step(i, t, z):
            save(i, t, z)
            if i == 1:
                raise KeyboardInterrupt

        return step

    out = tmp_path / "resumed"
    monkeypatch.setattr(cc, "state_saver", interrupting_saver)
    assert lc4_main([*args, "--output", str(out)]) == 130
    state = tmp_path / ".resumed.lc4-resume.pt"
    assert state.exists() and not out.exists()
    assert torch.load(state, weights_only=True)["step"] == 1
    monkeypatch.setattr(cc, "state_saver", real_saver)

    # a different job (another seed) must not use it
    with caplog.at_level("WARNING", logger="lc4"):
        cc.load_state(state, "another-key", 4)
    assert "belongs to another job" in caplog.text
    # the same job, run again, continues after step 2 of 4 and gives the uninterrupted result
    caplog.clear()
    with caplog.at_level("WARNING", logger="lc4"):
        assert lc4_main([*args, "--output", str(out)]) == 0
    assert "resuming a saved run after step 2/4" in caplog.text
    assert np.array_equal(png_folder(out), full)
    assert not state.exists()


def test_unreadable_resume_state_is_ignored(tmp_path, caplog):
    from lc4.colorize_cli import load_state

    bad = tmp_path / ".x.lc4-resume.pt"
    bad.write_bytes(os.urandom(100))
    with caplog.at_level("WARNING", logger="lc4"):
        assert load_state(bad, "k", 4) is None
    assert "unreadable resume file" in caplog.text
    torch.save({"key": "k", "step": 7, "latents": torch.zeros(1)}, bad)
    assert load_state(bad, "k", 4) is None  # a step beyond this run's steps


# --------------------------------------------------------------------------- errors


def header_only_mkv(path: Path) -> Path:
    """A Matroska file cut before its first cluster: a video stream with no frames."""
    full = write_mp4(path.with_suffix(".full.mkv"), grey_frames(4), audio=False, container="matroska")
    data = full.read_bytes()
    path.write_bytes(data[: data.find(bytes.fromhex("1F43B675"))])
    return path


@pytest.fixture(scope="module")
def error_cases(tmp_path_factory, media) -> list[tuple[str, list[str], str]]:
    d = tmp_path_factory.mktemp("bad")
    (d / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    header_only_mkv(d / "empty.mkv")
    (d / "noframes").mkdir()
    (d / "noframes" / "notes.txt").write_text("no images here")
    (d / "notamodel").mkdir()
    (d / "notamodel" / "weights.bin").write_bytes(b"\0" * 16)
    (d / "exists.mp4").write_bytes(b"keep me")
    (d / "names.json").write_text(json.dumps({"nothing": "a red car"}))
    mp4, out = str(media["mp4"]), str(d / "o.mp4")
    long_prompt = " ".join(["a red car and a blue bus"] * 14) + " under a violet sky"
    ok = ["--prompt", "a red car", *FAST]
    ref, junk, kf_table = keyframe_error_media(d)
    return [
        ("missing file", [str(d / "missing.mp4"), "--output", out, *ok], "input not found"),
        ("random bytes", [str(d / "junk.mp4"), "--output", out, *ok], "cannot read video"),
        ("zero frames", [str(d / "empty.mkv"), "--output", out, *ok], "no frames|cannot read video"),
        ("folder without frames", [str(d / "noframes"), "--output", out, *ok], "no image frames"),
        ("empty prompt", [mp4, "--output", out, "--prompt", "", *FAST], "the prompt is empty"),
        ("over-long prompt", [mp4, "--output", out, "--prompt", long_prompt, *FAST], "cut words: '.*violet sky'"),
        ("output is input", [mp4, "--output", mp4, *ok], "output is the same as the input"),
        ("resolution", [mp4, "--output", out, *ok, "--resolution", "36"], "multiple of 8, got 36"),
        ("scheduler", [mp4, "--output", out, *ok, "--scheduler", "FastScheduler"], "unknown scheduler"),
        ("not a model", [mp4, "--output", out, "--prompt", "a red car", "--quiet", "--model", str(d / "notamodel")],
         "not an L-C4 model folder"),
        ("output exists", [mp4, "--output", str(d / "exists.mp4"), *ok], "already exists"),
        ("overlapping ranges", [mp4, "--output", out, "--prompt", "0-6: a red car", "--prompt", "5-: a blue car",
                                *FAST], "overlaps"),
        ("uncovered frames", [mp4, "--output", out, "--prompt", "0-3: a red car", "--prompt", "6-: a blue car",
                              *FAST], "frames 4-5 have no prompt"),
        ("no prompt", [mp4, "--output", out, *FAST], "give --prompt"),
        ("prompt and prompts", [mp4, "--output", out, *ok, "--prompts", str(d / "names.json")], "not both"),
        ("steps", [mp4, "--output", out, *ok, "--steps", "0"], "--steps must be >= 1, got 0"),
        ("image for video", [mp4, "--output", str(d / "o.png"), *ok], "names one image"),
        ("batch names nothing", [str(d), "--prompts", str(d / "names.json"), "--output", str(d / "batch"), *FAST],
         "none of the 1 names"),
        ("no cuda", [mp4, "--output", out, *ok, "--device", "cuda"], "CUDA is not available"),
        ("negative guidance", [mp4, "--output", out, *ok, "--guidance", "-1"], r"--guidance must be >= 0 .*got -1"),
        ("noise correlation", [mp4, "--output", out, *ok, "--noise-correlation", "2"],
         r"--noise-correlation must be a number in \[0, 1\] \(0: independent frames\), got 2.0"),
        ("temporal guidance", [mp4, "--output", out, *ok, "--temporal-guidance", "-0.5"],
         r"--temporal-guidance must be a finite number >= 0 \(unset: .*, got -0.5"),
        ("temporal gate alone", [mp4, "--output", out, *ok, "--temporal-gate", "0.4"],
         r"--temporal-gate gates the temporal term of --temporal-guidance: set --temporal-guidance too"),
        ("avi output", [mp4, "--output", str(d / "o.avi"), *ok], r"cannot write \.avi video; write \.mp4, \.mkv or \.mov"),
        ("unknown suffix", [mp4, "--output", str(d / "o.mp5"), *ok], r"unknown suffix '\.mp5'"),
        # colour keyframes (issue 24)
        ("keyframe past the end", [mp4, "--output", out, *ok, "--keyframe", f"12:{ref}"],
         r"--keyframe 12:.*: frame 12 is out of range: grey.mp4 has 12 frames \(0-11\)"),
        ("negative keyframe", [mp4, "--output", out, *ok, f"--keyframe=-2:{ref}"],
         r"frame -2 is before the first frame; frames are numbered from 0"),
        ("unreadable keyframe", [mp4, "--output", out, *ok, "--keyframe", f"0:{junk}"],
         r"--keyframe 0:.*junk.png: cannot read the keyframe image"),
        ("missing keyframe", [mp4, "--output", out, *ok, "--keyframe", f"0:{d / 'nowhere.png'}"],
         r"keyframe image not found: .*nowhere.png"),
        ("two keyframes for one frame", [mp4, "--output", out, *ok, "--keyframe", f"3:{ref}", "--keyframe",
                                         f"03:{ref}"], r"two keyframes for frame 3"),
        ("keyframe syntax", [mp4, "--output", out, *ok, "--keyframe", ref], r"give FRAME:IMAGE"),
        ("keyframe scheduler", [mp4, "--output", out, *ok, "--keyframe", f"0:{ref}", "--scheduler", "IPNDMScheduler"],
         r"needs a scheduler with add_noise, and IPNDMScheduler has none"),
        ("keyframe strength", [mp4, "--output", out, *ok, "--keyframe", f"0:{ref}", "--keyframe-strength", "2"],
         r"--keyframe-strength must be a number in \[0, 1\]"),
        ("keyframe in batch mode", [str(d / "kfclips"), "--prompts", str(kf_table), "--output", str(d / "kfout"),
                                    *FAST, "--keyframe", f"0:{ref}"], r"--keyframe is for one input"),
        ("batch keyframe past the end", [str(d / "kfclips"), "--prompts", str(kf_table), "--output",
                                         str(d / "kfout"), *FAST], r"kf.json, 'clip' keyframe 7: frame 7 is out of "
                                                                   r"range: clip has 4 frames"),
        ("batch keyframe key", [str(d / "kfclips"), "--prompts", str(d / "kf_typo.json"), "--output",
                                str(d / "kfout"), *FAST], r"'clip': unknown key\(s\) 'keyframe'"),
    ]


def keyframe_error_media(d: Path) -> tuple[str, str, Path]:
    """A keyframe image, an unreadable one, and a batch (a 4-frame clip) whose table keys frame 7."""
    from PIL import Image

    from lc4.io import write_png_folder

    Image.fromarray(colour_frame()).save(d / "ref.png")
    (d / "junk.png").write_bytes(b"not an image at all")
    write_png_folder(grey_frames(4), d / "kfclips" / "clip")
    (d / "kf.json").write_text(json.dumps({"clip": {"prompt": "a red car", "keyframes": {"0": "ref.png",
                                                                                          "7": "ref.png"}}}))
    (d / "kf_typo.json").write_text(json.dumps({"clip": {"prompt": "a red car", "keyframe": {"0": "ref.png"}}}))
    return str(d / "ref.png"), str(d / "junk.png"), d / "kf.json"


def colour_frame(h: int = 32, w: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full((h, w), 128)], -1).astype(np.uint8)


def _check_one_line(stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lc4: error: ") and re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in stderr


def test_every_bad_input_is_one_line_in_process(error_cases, capsys):
    for name, args, expected in error_cases:
        code = lc4_main(["colorize", *args])
        err = capsys.readouterr().err
        assert code != 0, name
        # in-process, lc4's own log lines go to pytest's log capture, not stderr
        _check_one_line(err, expected)
    assert (Path(error_cases[0][1][2]).parent / "exists.mp4").read_bytes() == b"keep me"


@pytest.mark.slow
def test_every_bad_input_is_one_line_through_the_real_cli(error_cases):
    def one(case):
        name, args, expected = case
        return name, expected, run_cli(*args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, expected, done in pool.map(one, error_cases):
            assert done.returncode != 0, name
            assert done.returncode != 0, name
            _check_one_line(done.stderr, expected)


# --------------------------------------------------------------------------- --overwrite (issue 25)


@pytest.fixture
def no_model(monkeypatch):
    """Refusals must come before the model is loaded: loading it fails the test."""
    import lc4.colorize_cli as cc

    def fail(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cc, "load_pipeline", fail)


def test_overwrite_refuses_a_folder_holding_the_input(tmp_path, media, monkeypatch, capsys, no_model):
    """`lc4 colorize d/film.mp4 -o d --overwrite` used to delete d/, the input included."""
    d = tmp_path / "d"
    d.mkdir()
    film = d / "film.mp4"
    film.write_bytes(media["mp4"].read_bytes())
    (d / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for output in ("d", str(tmp_path), str(d / ".." / "d")):  # the folder, "$PWD", the folder through ..
        for fmt in ("auto", "png", "both"):
            code = lc4_main(["colorize", "d/film.mp4", "--prompt", "a", "-o", output, "--overwrite", *FAST,
                             "--format", fmt])
            err = capsys.readouterr().err
            assert code == 1, (output, fmt)
            _check_one_line(err, "holds the input|same as the input")
    assert film.read_bytes() == media["mp4"].read_bytes() and (d / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_folder_with_other_files_and_the_working_folder(tmp_path, media, monkeypatch, capsys,
                                                                            no_model):
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(work)
    args = ["colorize", str(media["mp4"]), "--prompt", "a", "--overwrite", *FAST]
    assert lc4_main([*args, "-o", str(work)]) == 1  # -o "$PWD" --overwrite
    _check_one_line(capsys.readouterr().err, "current working folder|thesis.tex, which lc4 did not write")
    assert lc4_main([*args, "-o", str(work), "--format", "png"]) == 1
    _check_one_line(capsys.readouterr().err, "current working folder|thesis.tex, which lc4 did not write")
    monkeypatch.chdir(tmp_path)
    assert lc4_main([*args, "-o", "work"]) == 1
    _check_one_line(capsys.readouterr().err, "thesis.tex, which lc4 did not write")
    assert (work / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_lc4s_own_frame_folder(tmp_path, media):
    out = tmp_path / "frames"
    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", "-o", str(out), *FAST, "--steps", "1"]
    assert lc4_main(args) == 0
    assert lc4_main([*args, "--overwrite", "--seed", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(12)]


def test_batch_overwrite_never_replaces_a_file_of_the_input_folder(tmp_path, capsys, no_model):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_mp4(clips / "clip.mp4", grey_frames(4), audio=False)  # not in the table, but the user's
    from lc4.io import write_png_folder

    write_png_folder(grey_frames(4), clips / "clip")  # its output would be clips/clip.mp4
    before = (clips / "clip.mp4").read_bytes()
    table = tmp_path / "prompts.json"
    table.write_text(json.dumps({"clip": "a red car"}))
    assert lc4_main(["colorize", str(clips), "--prompts", str(table), "-o", str(clips), "--overwrite", *FAST]) == 1
    _check_one_line(capsys.readouterr().err, "same as the input")
    assert (clips / "clip.mp4").read_bytes() == before
    # the batch's own folder as a PNG output: refused as well (it holds the inputs)
    assert lc4_main(["colorize", str(clips), "--prompts", str(table), "-o", str(clips / "clip" / ".."),
                     "--overwrite", "--format", "png", *FAST]) == 1
    _check_one_line(capsys.readouterr().err, "same as the input")


def test_evaluate_report_never_replaces_an_input_or_a_foreign_file(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for d in (pred, gt):
        d.mkdir()
    prompts = tmp_path / "prompts.json"
    prompts.write_text('{"a": "a red car"}')
    (tmp_path / "notes.md").write_text("my notes")
    base = ["evaluate", "--pred", str(pred), "--gt", str(gt), "--prompts", str(prompts), "--quiet", "--output"]
    for output, expected in ((tmp_path / "prompts", "same as the input"), (pred, "inside the --pred folder"),
                             (gt / "rep", "inside the --gt folder"), (tmp_path / "notes", "not an lc4 report")):
        assert lc4_main([*base, str(output)]) == 1
        _check_one_line(capsys.readouterr().err, expected)
    assert prompts.read_text() == '{"a": "a red car"}' and (tmp_path / "notes.md").read_text() == "my notes"
    assert list(pred.iterdir()) == [] and list(gt.iterdir()) == []


def test_synth_overwrite_refuses_a_foreign_folder(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "photos.zip").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert lc4_main(["synth", str(home), "--num-videos", "1", "--size", "32", "--frames", "2", "--format", "png",
                     "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "photos.zip, which lc4 did not write" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in home.iterdir()) == ["photos.zip"]
    monkeypatch.chdir(home)
    assert lc4_main(["synth", str(home), "--num-videos", "1", "--size", "32", "--frames", "2", "--overwrite"]) == 2
    assert "current working folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- containers, VFR, reproducibility,
# progress, demo warning, checkpoints (issue 25)


def test_video_containers_and_refused_suffixes(tmp_path, media, capsys, monkeypatch):
    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", *FAST, "--steps", "1"]
    assert lc4_main([*args, "-o", str(tmp_path / "out.mkv")]) == 0
    info = probe(tmp_path / "out.mkv")
    assert (info.num_frames, info.frame_rate, info.width, info.height, info.audio_codec) == (12, FPS, 48, 32, "aac")
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.format.name.startswith("matroska")
    assert lc4_main([*args, "-o", str(tmp_path / "both.mov"), "--format", "both"]) == 0
    assert probe(tmp_path / "both.mov").num_frames == 12 and probe(tmp_path / "both").num_frames == 12
    # a suffix lc4 does not write never becomes a PNG folder (before: out.avi/ held PNGs)
    import lc4.colorize_cli as cc

    monkeypatch.setattr(cc, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    for name in ("out.avi", "out.webm", "results.v2"):
        assert lc4_main([*args, "-o", str(tmp_path / name)]) == 1
        _check_one_line(capsys.readouterr().err, "cannot write|unknown suffix")
        assert not (tmp_path / name).exists()
    # a folder whose name has a dot: say so with a trailing slash or --format png
    monkeypatch.undo()
    assert lc4_main([*args, "-o", str(tmp_path / "results.v2") + "/"]) == 0
    assert lc4_main([*args, "-o", str(tmp_path / "frames.v3"), "--format", "png"]) == 0
    assert len(list((tmp_path / "results.v2").glob("*.png"))) == 12 == len(list((tmp_path / "frames.v3").glob("*.png")))


def write_vfr(path: Path, pts_ms: list[int]) -> Path:
    """Grey H.264 frames shown at `pts_ms` milliseconds: a variable frame rate (PyAV only)."""
    frames = grey_frames(len(pts_ms))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.codec_context.time_base = s.time_base = Fraction(1, 1000)
        for f, t in zip(frames, pts_ms):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


def shown_at(path: Path) -> list[float]:
    from test_io import presentation_times  # (read inside the open container: PyAV 18 refuses a closed one's)

    return presentation_times(path)


def test_variable_frame_rate_input_keeps_its_timestamps(tmp_path, caplog):
    """Issue 25: VFR input came out retimed to a constant rate (the picture drifted from the audio)."""
    pts_ms = [0, 40, 80, 200, 240, 400, 500, 540, 580, 900]
    src = write_vfr(tmp_path / "vfr.mp4", pts_ms)
    args = ["colorize", str(src), "--prompt", "a red car", *FAST, "--steps", "1"]
    assert lc4_main([*args, "-o", str(tmp_path / "out.mp4")]) == 0
    assert shown_at(tmp_path / "out.mp4") == pytest.approx([t / 1000 for t in pts_ms], abs=1e-3)
    with caplog.at_level("WARNING", logger="lc4"):
        assert lc4_main([*args, "-o", str(tmp_path / "frames")]) == 0
    assert "variable frame rate; PNG frames carry no timing" in caplog.text


def test_same_seed_gives_the_same_video_bytes(tmp_path, media):
    """Issue 25: two identical runs gave different MP4 files (the PNG frames were equal)."""
    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", *FAST, "--steps", "1", "--format", "both"]
    assert lc4_main([*args, "-o", str(tmp_path / "a.mp4")]) == 0
    assert lc4_main([*args, "-o", str(tmp_path / "b.mp4")]) == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert np.array_equal(png_folder(tmp_path / "a"), png_folder(tmp_path / "b"))


def test_progress_bars_for_decoding_and_writing_unless_quiet(tmp_path, media, capsys, monkeypatch):
    import lc4.io.progress as progress

    monkeypatch.setattr(progress, "BAR_DELAY", 0.0)  # the bars wait a second: these runs are shorter
    args = ["colorize", str(media["mp4"]), "--prompt", "a red car", "--model", "random-tiny", "--steps", "1",
            "--resolution", "32"]
    assert lc4_main([*args, "-o", str(tmp_path / "loud.mp4")]) == 0
    err = capsys.readouterr().err
    assert "decoding grey.mp4:   0%|          | 0/12" in err and "writing loud.mp4:   0%|          | 0/12" in err
    assert err.count("decoding grey.mp4:   0%") == 1  # the second read is counted by the writing bar
    assert lc4_main([*args, "-o", str(tmp_path / "quiet.mp4"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_demo_model_warns_once_that_it_knows_only_procedural_shapes(tmp_path, media, monkeypatch, caplog):
    import lc4.colorize_cli as cc

    def stop(*a, **k):
        raise ValueError("stopped before loading")

    monkeypatch.setattr(cc, "load_pipeline", stop)
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b", "c"):
        (clips / f"{name}.mp4").write_bytes(media["mp4"].read_bytes())
    table = tmp_path / "p.json"
    table.write_text(json.dumps({"a": "a red car", "b": "a blue car", "c": "a green car"}))
    with caplog.at_level("WARNING", logger="lc4"):
        assert lc4_main(["colorize", str(clips), "--prompts", str(table), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    warnings = [r.getMessage() for r in caplog.records if "demo model" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "trained only on procedural shapes" in warnings[0] and "--model path/to/sd15-or-lc4" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="lc4"):
        lc4_main(["colorize", str(media["mp4"]), "--prompt", "a", "-o", str(tmp_path / "x.mp4"), *FAST])
    assert "demo model" not in caplog.text  # not for other models


def test_untrusted_pickle_checkpoint_points_to_trust_checkpoint(tmp_path, media, capsys):
    """Issue 25: a .ckpt refused as not weights-only must tell the user about --trust-checkpoint."""
    import pickle

    # refused for a global torch reports on a later line, and for a pickle instruction it does not run
    (tmp_path / "global.ckpt").write_bytes(pickle.dumps({"state_dict": {}, "f": os.getcwd}, protocol=2))
    (tmp_path / "protocol0.ckpt").write_bytes(pickle.dumps({"state_dict": {"w": 1}}, protocol=0))
    (tmp_path / "damaged.ckpt").write_bytes(b"definitely not a pickle")
    for name, expected in (("global", "--trust-checkpoint"), ("protocol0", "--trust-checkpoint"),
                           ("damaged", "not a readable PyTorch checkpoint")):
        code = lc4_main(["colorize", str(media["mp4"]), "--prompt", "a", "-o", str(tmp_path / "o.mp4"), "--quiet",
                         "--model", str(tmp_path / f"{name}.ckpt")])
        err = capsys.readouterr().err
        assert code == 1
        _check_one_line(err, expected)
        if name == "damaged":
            assert "trust-checkpoint" not in err


# --------------------------------------------------------------------------- strips


def test_strip_samples_evenly_and_lays_out_rows(tmp_path, media, capsys):
    from PIL import Image

    from lc4.strip import GAP, LABEL_WIDTH, main as strip_main, make_strip, sample_indices

    assert sample_indices(12, 4).tolist() == [0, 4, 7, 11] and sample_indices(3, 6).tolist() == [0, 1, 2]
    a = np.zeros((5, 20, 40, 3), np.uint8)
    a[4] = 255  # the last frame is white: the strip's last column must show it
    b = np.full((2, 30, 30, 3), 128, np.uint8)
    im = np.asarray(make_strip([a, b], ["a", "b"], frames=3, height=10))
    assert im.shape == (2 * (10 + GAP), LABEL_WIDTH + max(3 * (20 + GAP), 2 * (10 + GAP)), 3)
    last_tile = im[GAP // 2 : GAP // 2 + 10, LABEL_WIDTH + 2 * (20 + GAP) : LABEL_WIDTH + 2 * (20 + GAP) + 20]
    assert (last_tile == 255).all()
    with pytest.raises(ValueError, match="2 labels for 1 videos"):
        make_strip([a], ["a", "b"])

    folder = tmp_path / "frames"
    from lc4.io import write_png_folder

    write_png_folder(grey_frames(7), folder)
    out = tmp_path / "strip.png"
    assert strip_main([str(media["mp4"]), str(folder), "--output", str(out), "--frames", "4"]) == 0
    with Image.open(out) as s:
        assert s.size == (LABEL_WIDTH + 4 * (round(48 * 96 / 32) + GAP), 2 * (96 + GAP))
    assert strip_main([str(media["mp4"]), "--output", str(out), "--labels", "x", "y"]) == 1
    assert strip_main([str(media["mp4"]), "--output", str(media["mp4"])]) == 1
    assert strip_main([str(tmp_path / "missing.mp4"), "--output", str(out)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("lc4: error: ") for e in errors)
    assert "2 labels for 1 videos" in errors[0] and "same as the input" in errors[1]


# --------------------------------------------------------------------------- colour keyframes (issue 24)


def test_keyframe_run_holds_the_frame_and_keys_the_resume_state(tmp_path, media):
    """--keyframe changes the output (its frame most), and keyframes are part of the resume key."""
    import argparse

    import lc4.colorize_cli as cc
    from PIL import Image

    from lc4.keyframes import parse_keyframe_args

    ref = tmp_path / "ref.png"
    Image.fromarray(colour_frame(64, 96)).save(ref)  # another resolution than the video's: resized
    base = ["colorize", str(media["mp4"]), "--prompt", "a red car", *FAST, "--steps", "3", "--format", "png"]
    assert lc4_main([*base, "-o", str(tmp_path / "off")]) == 0
    assert lc4_main([*base, "-o", str(tmp_path / "on"), "--keyframe", f"5:{ref}"]) == 0
    assert lc4_main([*base, "-o", str(tmp_path / "zero"), "--keyframe", f"5:{ref}", "--keyframe-strength", "0"]) == 0
    off, on, zero = (png_folder(tmp_path / n) for n in ("off", "on", "zero"))
    assert on.shape == off.shape == (12, 32, 48, 3)
    assert np.array_equal(zero, off) and not np.array_equal(on[5], off[5])
    assert np.abs(to_grey(on)[..., 0].astype(int) - to_grey(off)[..., 0].astype(int)).max() <= 1  # same L

    parser = cc.add_arguments(argparse.ArgumentParser())

    def key(*extra: str) -> str:
        args = parser.parse_args([str(media["mp4"]), "--prompt", "a red car", "-o", str(tmp_path / "k.mp4"), *extra])
        job = cc.plan_job(Path(args.input), args.prompt, Path(args.output), args,
                          keyframes=parse_keyframe_args(args.keyframe))
        return cc.job_key(args, job)

    plain, keyed = key(), key("--keyframe", f"5:{ref}")
    assert len({plain, keyed, key("--keyframe", f"4:{ref}"), key("--keyframe", f"5:{ref}", "--keyframe-strength",
                                                                 "0.5"),
                key("--keyframe", f"5:{ref}", "--keyframe-luminance", "keyframe"),
                key("--keyframe", f"5:{ref}", "--keyframe-hold", "clean")}) == 6
    assert key("--keyframe", f"5:{ref}") == keyed == key("--keyframe", f"5:{ref}", "--keyframe-hold", "noised")
    assert key("--noise-correlation", "0") == plain != key("--noise-correlation", "0.5")  # shared noise: another job
    assert plain != key("--temporal-guidance", "1") != key("--temporal-guidance", "2")  # another guidance: another job
    assert key("--temporal-guidance", "1") != key("--temporal-guidance", "1", "--temporal-gate", "0.4")
    Image.fromarray(colour_frame(64, 96)[::-1]).save(ref)  # the same path, another picture: another job
    assert key("--keyframe", f"5:{ref}") != keyed


def test_no_output_replaces_a_keyframe_image(tmp_path, capsys, no_model):
    from PIL import Image

    Image.fromarray(grey_frames(1)[0]).save(tmp_path / "photo.png")
    Image.fromarray(colour_frame()).save(tmp_path / "ref.png")
    before = (tmp_path / "ref.png").read_bytes()
    assert lc4_main(["colorize", str(tmp_path / "photo.png"), "--prompt", "a red car", "--keyframe",
                     f"0:{tmp_path / 'ref.png'}", "-o", str(tmp_path / "ref.png"), "--overwrite", *FAST]) == 1
    _check_one_line(capsys.readouterr().err, "same as the input")
    assert (tmp_path / "ref.png").read_bytes() == before


def test_batch_table_gives_each_video_its_prompts_and_keyframes(tmp_path, capsys):
    from PIL import Image

    from lc4.evaluation.prompts import load_colorize_table, load_prompts
    from lc4.io import write_png_folder

    videos, refs = tmp_path / "videos", tmp_path / "tables" / "refs"
    write_png_folder(grey_frames(10), videos / "bear")
    write_png_folder(grey_frames(6, 24, 40), videos / "swan")
    refs.mkdir(parents=True)
    Image.fromarray(colour_frame()).save(refs / "bear0.png")
    Image.fromarray(colour_frame(24, 40)).save(refs / "bear9.png")
    table = tmp_path / "tables" / "prompts.json"
    table.write_text(json.dumps({
        "bear": {"prompt": ["0-4: a brown bear", "5-: a black bear"], "keyframes": {"0": "refs/bear0.png",
                                                                                   "9": "refs/bear9.png"}},
        "swan": "a white swan", "empty": "",
    }))
    entries = load_colorize_table(table)
    assert sorted(entries) == ["bear", "swan"]  # an empty prompt is dropped, as load_prompts does
    assert entries["bear"].prompts == ["0-4: a brown bear", "5-: a black bear"]
    assert [(k.index, k.image) for k in entries["bear"].keyframes] == [(0, refs / "bear0.png"), (9, refs / "bear9.png")]
    assert entries["swan"].prompts == ["a white swan"] and entries["swan"].keyframes == []
    # lc4 evaluate reads the same table: an object entry with one prompt string gives that prompt
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"bear": {"prompt": "a brown bear", "keyframes": {"0": "x.png"}}, "swan": "a swan"}))
    assert load_prompts(one) == {"bear": "a brown bear", "swan": "a swan"}
    out = tmp_path / "out"
    assert lc4_main(["colorize", str(videos), "--prompts", str(table), "-o", str(out), *FAST, "--format", "png"]) == 0
    assert png_folder(out / "bear").shape == (10, 32, 48, 3) and png_folder(out / "swan").shape == (6, 24, 40, 3)
    for text, message in (
        ('{"bear": {"prompt": "a bear", "keyframes": {"0": "refs/bear0.png", "0": "refs/bear9.png"}}}',
         "'bear' keyframe 0: two keyframes for frame 0"),
        ('{"bear": {"prompt": "a bear", "keyframes": {"0": "refs/bear0.png", "00": "refs/bear9.png"}}}',
         "two keyframes for frame 0"),
        ('{"bear": "a bear", "bear": "a brown bear"}', "the name 'bear' appears twice"),
        ('{"bear": {"keyframes": {"0": "refs/bear0.png"}}}', '"prompt" must be a non-empty string'),
        ('{"bear": {"prompt": "a bear", "keyframes": ["refs/bear0.png"]}}', '"keyframes" must map frame numbers'),
        ('{"bear": {"prompt": "a bear", "keyframes": {"first": "refs/bear0.png"}}}', "must be an integer"),
    ):
        table.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_colorize_table(table)
    table.write_text(json.dumps({"bear": {"prompt": "a bear", "keyframes": {"3": "refs/missing.png"}}}))
    assert lc4_main(["colorize", str(videos), "--prompts", str(table), "-o", str(tmp_path / "o2"), *FAST]) == 1
    _check_one_line(capsys.readouterr().err, r"'bear' keyframe 3: keyframe image not found: .*refs/missing.png")
