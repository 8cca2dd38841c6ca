"""prepare_ground_truth replaces only what lc4 wrote (issue 25: --overwrite never deletes other files or an input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lc4.evaluation import prepare_ground_truth


def _frames(folder: Path, count: int = 3, size: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(folder.name))
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def src(tmp_path) -> Path:
    """A folder of two frame folders."""
    for name in ("alpha", "beta"):
        _frames(tmp_path / "src" / name)
    return tmp_path / "src"


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("where", ["gt", "gray"])
def test_overwrite_never_replaces_a_sequence_folder_with_other_files(src, tmp_path, where, overwrite):
    dst = tmp_path / "dst"
    assert prepare_ground_truth(src, dst, resolution=8) == ["alpha", "beta"]
    (dst / where / "beta" / "notes.txt").write_text("mine")
    if not overwrite:  # a half-finished sequence (gray/ missing) is redone: its gt/ is replaced
        other = "gray" if where == "gt" else "gt"
        for p in (dst / other / "beta").iterdir():
            p.unlink()
        (dst / other / "beta").rmdir()
    before = _tree(dst)
    with pytest.raises(ValueError, match=r"holds notes\.txt, which lc4 did not write"):
        prepare_ground_truth(src, dst, resolution=8, overwrite=overwrite)
    assert _tree(dst) == before  # refused before anything was written, alpha included
    (dst / where / "beta" / "notes.txt").unlink()
    assert prepare_ground_truth(src, dst, resolution=8, overwrite=True) == ["alpha", "beta"]
    assert sorted(p.name for p in (dst / where / "beta").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_overwrite_never_replaces_a_folder_holding_the_source(src, tmp_path):
    """dst must not hold src: the sequence folders lc4 writes could be the source itself."""
    data = tmp_path / "data"
    _frames(data / "gt" / "alpha")  # a frame-folder set at data/gt: dst=data would write data/gt/alpha
    before = _tree(data)
    with pytest.raises(ValueError, match="must not hold the source set"):
        prepare_ground_truth(data / "gt", data, resolution=8, overwrite=True)
    with pytest.raises(ValueError, match="must not hold the source set"):
        prepare_ground_truth(data / "gt", data, resolution=8)
    assert _tree(data) == before
    with pytest.raises(ValueError, match="outside"):  # the other way round, as before
        prepare_ground_truth(src, src / "out")
