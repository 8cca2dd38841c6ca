"""`python -m lc4.strip` replaces only a strip it wrote, or any non-input file with --overwrite (issue 25)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lc4.strip import SOFTWARE, is_strip, main as strip_main, make_strip, save_strip


@pytest.fixture()
def videos(tmp_path) -> list[str]:
    """Two 4-frame PNG folders."""
    out = []
    for k in range(2):
        folder = tmp_path / f"v{k}"
        folder.mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 10, 3), 40 * i + k, np.uint8)).save(folder / f"{i:05d}.png")
        out.append(str(folder))
    return out


def _run(videos: list[str], out: Path, *extra: str) -> int:
    return strip_main([*videos, "--output", str(out), "--frames", "2", "--height", "8", *extra])


@pytest.mark.parametrize("existing", ["notes.txt", "photo.png"])
def test_strip_never_replaces_a_file_it_did_not_write(videos, tmp_path, capsys, existing):
    out = tmp_path / existing
    if existing.endswith(".png"):  # a user's PNG, not a strip
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(out)
    else:
        out.write_text("my notes")
    before = out.read_bytes()
    assert _run(videos, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a strip lc4 wrote; pass --overwrite" in err[0], err
    assert out.read_bytes() == before and not is_strip(out)
    assert _run(videos, out, "--overwrite") == 0  # asked explicitly: replaced
    assert is_strip(out)


def test_strip_replaces_its_own_strip_and_never_an_input(videos, tmp_path, capsys):
    out = tmp_path / "strip.png"
    assert _run(videos, out) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.info["Software"] == SOFTWARE
    first = out.read_bytes()
    assert _run(videos, out, "--labels", "x", "y") == 0  # a rerun (scripts/demo.sh) replaces lc4's own strip
    assert out.read_bytes() != first and is_strip(out)
    frame = Path(videos[0]) / "00000.png"  # an image is a one-frame input
    before = frame.read_bytes()
    assert _run([*videos, str(frame)], frame, "--overwrite") == 1  # an input, even with --overwrite
    assert _run(videos, tmp_path, "--overwrite") == 1  # a folder
    assert frame.read_bytes() == before and len(capsys.readouterr().err.strip().splitlines()) == 2
    with pytest.raises(FileExistsError, match="not a strip lc4 wrote"):
        save_strip(make_strip([np.zeros((2, 4, 4, 3), np.uint8)]), tmp_path / "v1" / "00001.png")
    save_strip(make_strip([np.zeros((2, 4, 4, 3), np.uint8)]), out)  # the function replaces a strip, too
