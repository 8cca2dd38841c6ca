"""LPIPS: torchvision/lpips on-disk key layouts load, the forward equals a functional
transcription written here, and missing weights give an error that names the files."""

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lc4.metrics import load_lpips, lpips, lpips_per_frame

# torchvision.models.alexnet().features parameter shapes (index: (out, in, k))
ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
HEAD_CHANNELS = (64, 192, 384, 256, 256)


def _write_weights(folder, seed=0):
    g = torch.Generator().manual_seed(seed)
    alex = {}
    for i, (o, c, k) in ALEX_CONVS.items():
        alex[f"features.{i}.weight"] = torch.randn(o, c, k, k, generator=g) * (2.0 / (c * k * k)) ** 0.5
        alex[f"features.{i}.bias"] = torch.randn(o, generator=g) * 0.01
    alex["classifier.1.weight"] = torch.randn(8, 4, generator=g)  # ignored by the loader
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for i, c in enumerate(HEAD_CHANNELS)}
    torch.save(alex, folder / "alexnet-owt-7be5be79.pth")
    torch.save(heads, folder / "alex.pth")
    return alex, heads


def _functional_lpips(a, b, alex, heads):
    """Direct transcription of LPIPS v0.1 (AlexNet) with F.conv2d on the raw state dicts."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(x):
        x = (x - shift) / scale
        out = []
        x = F.relu(F.conv2d(x, alex["features.0.weight"], alex["features.0.bias"], stride=4, padding=2))
        out.append(x)
        x = F.max_pool2d(x, 3, 2)
        x = F.relu(F.conv2d(x, alex["features.3.weight"], alex["features.3.bias"], padding=2))
        out.append(x)
        x = F.max_pool2d(x, 3, 2)
        for i in (6, 8, 10):
            x = F.relu(F.conv2d(x, alex[f"features.{i}.weight"], alex[f"features.{i}.bias"], padding=1))
            out.append(x)
        return out

    total = 0
    for k, (x, y) in enumerate(zip(feats(a), feats(b))):
        x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((x - y) ** 2, heads[f"lin{k}.model.1.weight"]).mean(dim=(1, 2, 3))
    return total


@pytest.fixture()
def weights(tmp_path):
    alex, heads = _write_weights(tmp_path)
    return tmp_path, alex, heads


def test_forward_matches_functional_transcription(weights):
    folder, alex, heads = weights
    model = load_lpips(folder)
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (3, 64, 72, 3), dtype=np.uint8)
    gt = np.clip(pred.astype(int) + rng.integers(-40, 41, pred.shape), 0, 255).astype(np.uint8)
    ours = lpips_per_frame(pred, gt, model)
    a = torch.from_numpy(pred).permute(0, 3, 1, 2).float() / 127.5 - 1
    b = torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = _functional_lpips(a, b, alex, heads).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert lpips(pred, gt, model) == pytest.approx(float(ref.mean()), abs=1e-6)


def test_identity_zero_and_symmetry(weights):
    model = load_lpips(weights[0])
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    assert np.all(lpips_per_frame(x, x, model) == 0)
    np.testing.assert_allclose(lpips_per_frame(x, y, model), lpips_per_frame(y, x, model), atol=1e-6)
    assert np.all(lpips_per_frame(x, y, model) > 0)


def test_single_file_paths_and_hub_cache(tmp_path, monkeypatch):
    _write_weights(tmp_path)
    hub = tmp_path / "home"
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "alexnet-owt-7be5be79.pth").rename(hub / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(hub))
    model = load_lpips(weights_dir=tmp_path)  # backbone from the hub cache, heads from weights_dir
    assert model.lin0.model[1].weight.shape == (1, 64, 1, 1)


def test_missing_weights_name_both_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    # the function lc4.metrics.lpips shadows the module's attribute name; patch the module itself
    monkeypatch.setattr(importlib.import_module("lc4.metrics.lpips"), "_lpips_package_weights", lambda: [])
    with pytest.raises(FileNotFoundError) as err:
        load_lpips(tmp_path / "nothing_here")
    msg = str(err.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "alex.pth" in msg and "nothing_here" in msg


def test_bad_head_file(tmp_path):
    _write_weights(tmp_path)
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "alex.pth")
    with pytest.raises(ValueError, match="lin1.model.1.weight"):
        load_lpips(tmp_path)
