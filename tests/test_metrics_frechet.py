"""Fréchet distance (closed forms, SciPy reference) and the FVD / FID TorchScript loaders,
exercised with small scripted detectors that have the real call interface."""

import numpy as np
import pytest
import scipy.linalg
import torch

from lc4.metrics import fid, frechet_distance, fvd, gaussian_stats, i3d_features, inception_features, load_i3d
from lc4.metrics import load_inception, video_clips


def test_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_one_dimensional_and_identical():
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + (2 - 3) ** 2)
    s = np.cov(np.random.default_rng(1).normal(size=(50, 4)), rowvar=False)
    assert frechet_distance(np.ones(4), s, np.ones(4), s) == pytest.approx(0.0, abs=1e-9)


def test_full_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    m1, s1 = gaussian_stats(x)
    m2, s2 = gaussian_stats(y)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)


def test_rank_deficient_is_finite_and_nonnegative():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 10)), rng.normal(size=(3, 10))
    value = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    assert np.isfinite(value) and value >= 0


def test_gaussian_stats_ddof_and_errors():
    x = np.random.default_rng(4).normal(size=(20, 3))
    np.testing.assert_allclose(gaussian_stats(x)[1], np.cov(x, rowvar=False, bias=True), atol=1e-12)
    np.testing.assert_allclose(gaussian_stats(x, ddof=1)[1], np.cov(x, rowvar=False), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match=r"\(D,\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(3))


class _FakeI3D(torch.nn.Module):
    """Same call convention as StyleGAN-V's i3d_torchscript.pt: uint8 (B, 3, T, H, W) + flags."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[1] != 3:
            raise RuntimeError("expected uint8 (B, 3, T, H, W)")
        if not (rescale and resize and return_features):
            raise RuntimeError("expected rescale, resize and return_features")
        y = x.float() / 127.5 - 1.0
        motion = (y[:, :, 1:] - y[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        return torch.cat([y.mean(dim=(2, 3, 4)), y.std(dim=(2, 3, 4)), motion], dim=1)


class _FakeInception(torch.nn.Module):
    """Same call convention as StyleGAN2-ADA's inception-2015-12-05.pt: uint8 (B, 3, H, W)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3 or not return_features:
            raise RuntimeError("expected uint8 (B, 3, H, W) and return_features")
        y = x.float() / 255.0
        return torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)


@pytest.fixture()
def detectors(tmp_path):
    torch.jit.script(_FakeI3D()).save(str(tmp_path / "i3d_torchscript.pt"))
    torch.jit.script(_FakeInception()).save(str(tmp_path / "inception-2015-12-05.pt"))
    return tmp_path


def _videos(seed, n=3, t=32):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8) for _ in range(n)]


def test_video_clips_layout():
    v = np.arange(40)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    clips = video_clips(v.astype(np.uint8), 16)
    assert clips.shape == (2, 16, 2, 2, 3) and clips[1, 0, 0, 0, 0] == 16
    short = video_clips(v[:5].astype(np.uint8), 16)
    assert short.shape == (1, 16, 2, 2, 3) and np.all(short[0, 5:] == 4)


def test_fvd_with_scripted_detector(detectors):
    det = load_i3d(weights_dir=detectors)
    pred, gt = _videos(0), _videos(1)
    feats = i3d_features(pred, det)
    direct = torch.cat(
        [_FakeI3D()(torch.from_numpy(c).permute(3, 0, 1, 2)[None], True, True, True) for v in pred for c in video_clips(v)]
    ).double().numpy()
    np.testing.assert_allclose(feats, direct, atol=1e-6)
    fg = i3d_features(gt, det)
    ref = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False, bias=True), fg.mean(0), np.cov(fg, rowvar=False, bias=True))
    assert fvd(pred, gt, weights_dir=detectors) == pytest.approx(ref, rel=1e-6)
    assert fvd(pred, pred, detector=det) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_scripted_detector(detectors):
    det = load_inception(weights_dir=detectors)
    pred, gt = _videos(2, n=2, t=5), _videos(3, n=2, t=5)
    fp, fg = inception_features(pred, det), inception_features(gt, det)
    assert fp.shape == (10, 6)
    ref = frechet_distance(*gaussian_stats(fp), *gaussian_stats(fg))
    assert fid(pred, gt, weights_dir=detectors) == pytest.approx(ref, rel=1e-12)
    assert fid(gt, gt, detector=det) == pytest.approx(0.0, abs=1e-9)


def test_missing_detectors_name_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_i3d(weights_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt"):
        load_inception(weights_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_i3d(path=tmp_path / "elsewhere.pt")
