"""lc4.color: CIELAB against scikit-image, grey frames, luminance recombination, working size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color as skcolor
from skimage import data

from lc4 import color as C

NATURAL = ("astronaut", "chelsea", "coffee", "rocket")


def _natural(name: str) -> np.ndarray:
    return getattr(data, name)()


def _random_lab(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, 100, n), rng.uniform(-128, 127, n), rng.uniform(-128, 127, n)], -1)


def _luma601(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


# ------------------------------------------------------------------ CIELAB vs scikit-image


@pytest.mark.parametrize("name", NATURAL)
def test_rgb_to_lab_matches_skimage_on_natural_images(name):
    img = _natural(name)
    ours = C.rgb_to_lab(img)
    assert ours.dtype == np.float64 and ours.shape == img.shape
    np.testing.assert_allclose(ours, skcolor.rgb2lab(img), atol=1e-4)


def test_rgb_to_lab_matches_skimage_on_cube_corners_and_thresholds():
    # every corner of the RGB cube plus values right at the sRGB / Lab branch points
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T.astype(np.float64)
    edges = np.array([[0.04045] * 3, [0.04046] * 3, [0.0031308] * 3, [0.08, 0.0, 0.0], [1e-6, 0, 1]])
    rng = np.random.default_rng(1)
    x = np.concatenate([corners, edges, rng.random((5000, 3))])
    np.testing.assert_allclose(C.rgb_to_lab(x), skcolor.rgb2lab(x[None])[0], atol=1e-4)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    lab = _random_lab(20000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about negative Z values
        ref = skcolor.lab2rgb(lab[None])[0]
    ours = C.lab_to_rgb(lab)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert ours.min() >= 0 and ours.max() <= 1
    unclipped = C.lab_to_rgb(lab, clip=False)
    assert unclipped.min() < -0.1 and unclipped.max() > 1.1  # the random set leaves the gamut


def test_float32_numpy_stays_float32_and_close():
    img = _natural("coffee").astype(np.float32) / 255
    lab = C.rgb_to_lab(img)
    assert lab.dtype == np.float32
    np.testing.assert_allclose(lab, skcolor.rgb2lab(img.astype(np.float64)), atol=2e-3)


def test_round_trip_rgb_lab_rgb_is_identity():
    x = np.random.default_rng(2).random((4, 17, 3))
    np.testing.assert_allclose(C.lab_to_rgb(C.rgb_to_lab(x)), x, atol=1e-10)


def test_torch_is_channel_first_batched_and_matches_numpy():
    img = _natural("astronaut")[::8, ::8]  # 64x64
    batch = np.stack([img, img[::-1], img[:, ::-1]])  # (3, H, W, 3)
    t = torch.from_numpy(batch).permute(0, 3, 1, 2).double().div(255)[None]  # (1, 3, 3, H, W)
    lab_t = C.rgb_to_lab(t)
    assert lab_t.shape == t.shape and lab_t.dtype == torch.float64
    ref = skcolor.rgb2lab(batch)
    np.testing.assert_allclose(lab_t[0].permute(0, 2, 3, 1).numpy(), ref, atol=1e-6)
    # float32 tensors stay float32; precision limited by float32
    lab32 = C.rgb_to_lab(t.float())
    assert lab32.dtype == torch.float32
    np.testing.assert_allclose(lab32[0].permute(0, 2, 3, 1).numpy(), ref, atol=2e-3)
    # channel_dim override: a channel-last tensor
    lab_last = C.rgb_to_lab(torch.from_numpy(batch).double() / 255, channel_dim=-1)
    np.testing.assert_allclose(lab_last.numpy(), ref, atol=1e-6)
    back = C.lab_to_rgb(lab_t)
    torch.testing.assert_close(back, t, atol=1e-9, rtol=0)


def test_half_precision_tensor_is_computed_in_float32():
    t = torch.rand(2, 3, 5, 5)
    lab = C.rgb_to_lab(t.half())
    assert lab.dtype == torch.float16
    torch.testing.assert_close(lab.float(), C.rgb_to_lab(t.half().float()), atol=0.1, rtol=1e-3)


def test_gradients_are_finite_at_branch_points_and_match_finite_differences():
    x = torch.tensor(
        [0.0, 1.0, 0.04045, 0.0031308, 1e-8, 0.5, 0.2, 0.9, 0.0], dtype=torch.float64
    ).reshape(1, 3, 3, 1)
    x.requires_grad_(True)
    loss = C.lab_to_rgb(C.rgb_to_lab(x), clip=False).square().sum() + C.rgb_to_lab(x).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # away from the kinks the analytic gradient equals finite differences
    y = (torch.rand(2, 3, 4, 4, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: C.rgb_to_lab(v), (y,), eps=1e-6, atol=1e-5)
    lab = C.rgb_to_lab(y.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: C.lab_to_rgb(v, clip=False), (lab,), eps=1e-6, atol=1e-5)


def test_lightness_equals_lab_l():
    img = _natural("chelsea")
    np.testing.assert_allclose(C.lightness(img)[..., 0], skcolor.rgb2lab(img)[..., 0], atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2)), np.zeros((4, 4, 3), dtype=np.int32), np.zeros(3, dtype=bool)])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        C.rgb_to_lab(bad)


def test_lab_to_rgb_refuses_integer_lab():
    with pytest.raises(ValueError, match="floating"):
        C.lab_to_rgb(np.zeros((2, 3), dtype=np.uint8))


# ------------------------------------------------------------------ grey


def test_to_grey_keeps_l_and_zeroes_chroma():
    img = _natural("astronaut").astype(np.float64) / 255
    grey = C.to_grey(img)
    assert grey.shape == img.shape
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    lab_in, lab_out = skcolor.rgb2lab(img), skcolor.rgb2lab(grey)
    np.testing.assert_allclose(lab_out[..., 0], lab_in[..., 0], atol=1e-9)
    assert np.abs(lab_out[..., 1:]).max() < 0.01
    # the paper protocol: lab2rgb(L, 0, 0)
    ref = skcolor.lab2rgb(np.concatenate([lab_in[..., :1], np.zeros_like(lab_in[..., 1:])], -1))
    np.testing.assert_allclose(grey, ref, atol=1e-4)


def test_to_grey_uint8_and_torch():
    img = _natural("coffee")
    grey = C.to_grey(img)
    assert grey.dtype == np.uint8
    assert np.abs(C.lightness(grey) - C.lightness(img)).max() < 0.6  # uint8 rounding only
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    gt = C.to_grey(t[None])[0]
    assert gt.shape == t.shape
    np.testing.assert_allclose(gt.permute(1, 2, 0).numpy() * 255, grey, atol=0.51)
    assert np.array_equal(C.to_grey(grey), grey)  # idempotent on grey frames


def test_is_grey():
    img = _natural("coffee")
    grey = C.to_grey(img)
    video = np.stack([grey, grey[::-1]])
    assert C.is_grey(video)
    assert not C.is_grey(img)
    noise = np.random.default_rng(0).integers(-2, 3, video.shape)
    assert C.is_grey(np.clip(video.astype(int) + noise, 0, 255).astype(np.uint8))
    sepia = np.clip(grey.astype(float) * [1.0, 0.85, 0.65], 0, 255).astype(np.uint8)
    assert not C.is_grey(sepia)
    assert C.is_grey(torch.from_numpy(grey).permute(2, 0, 1).float() / 255)
    with pytest.raises(ValueError, match="tol"):
        C.is_grey(video, tol=2.0)


# ------------------------------------------------------------------ luminance recombination


@pytest.mark.parametrize("name", NATURAL)
def test_recombine_preserves_luminance_on_natural_images(name):
    """Prediction = the image at working resolution; output L must be the input's, chroma close."""
    img = _natural(name)
    h, w = C.fit_size(*img.shape[:2], 256)
    pred = C.resize_frames(img, (h, w))
    out = C.recombine_luminance(pred, img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert _psnr(_luma601(out), _luma601(img), 255) >= 40
    assert _psnr(C.lightness(out), C.lightness(img), 100) >= 50
    assert np.abs(C.lightness(out) - C.lightness(img)).max() < 0.6
    # chroma came back in the right place (a transposed or misaligned upsampling fails this)
    ab_out, ab_in = C.rgb_to_lab(out)[..., 1:], C.rgb_to_lab(img)[..., 1:]
    assert np.abs(ab_out - ab_in).mean() < 1.5


def test_recombine_gamut_modes_on_saturated_prediction():
    rng = np.random.default_rng(3)
    source = C.resize_frames(_natural("astronaut"), (96, 128))[None].repeat(2, 0)
    pred = rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)  # random saturated chroma
    pred = C.resize_frames(pred, (48, 64))
    L_src = C.lightness(source)
    exact = C.recombine_luminance(pred, source, gamut="chroma")
    clipped = C.recombine_luminance(pred, source, gamut="clip")
    assert np.abs(C.lightness(exact) - L_src).max() < 0.6
    assert np.abs(C.lightness(clipped) - L_src).max() > 2.0  # clipping changes L; chroma mode does not
    # chroma mode only desaturates: hue of strongly coloured pixels is kept
    ab_e, ab_c = C.rgb_to_lab(exact)[..., 1:], C.rgb_to_lab(clipped)[..., 1:]
    strong = (np.hypot(*np.moveaxis(ab_e, -1, 0)) > 20) & (np.hypot(*np.moveaxis(ab_c, -1, 0)) > 20)
    hue_e = np.arctan2(ab_e[..., 1], ab_e[..., 0])[strong]
    hue_c = np.arctan2(ab_c[..., 1], ab_c[..., 0])[strong]
    assert np.median(np.abs(np.angle(np.exp(1j * (hue_e - hue_c))))) < 0.3


def test_recombine_accepts_torch_prediction_grey_source_and_single_frames():
    img = _natural("chelsea")[:200, :300]
    pred = C.resize_frames(img, (64, 96))
    out_np = C.recombine_luminance(pred, img)
    pred_t = torch.from_numpy(pred).permute(2, 0, 1).float() / 255
    out_t = C.recombine_luminance(pred_t, img)
    assert np.abs(out_np.astype(int) - out_t.astype(int)).max() <= 1
    out_grey = C.recombine_luminance(pred[None], C.to_grey(img)[None])
    assert out_grey.shape == (1, 200, 300, 3)
    assert np.abs(C.lightness(out_grey[0]) - C.lightness(img)).max() < 1.2  # grey source was rounded once


def test_recombine_larger_prediction_is_antialiased_down():
    img = _natural("rocket")[:120, :160]
    big = C.resize_frames(img, (240, 320))
    out = C.recombine_luminance(big, img)
    assert np.abs(C.rgb_to_lab(out)[..., 1:] - C.rgb_to_lab(img)[..., 1:]).mean() < 1.5


def test_recombine_errors():
    img = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="frames"):
        C.recombine_luminance(np.zeros((3, 4, 4, 3), np.uint8), img)
    with pytest.raises(ValueError, match="uint8"):
        C.recombine_luminance(np.zeros((2, 4, 4, 3), np.uint8), img.astype(np.float32))
    with pytest.raises(ValueError, match="gamut"):
        C.recombine_luminance(np.zeros((2, 4, 4, 3), np.uint8), img, gamut="none")  # type: ignore[arg-type]


# ------------------------------------------------------------------ working resolution


def test_fit_size_properties():
    rng = np.random.default_rng(4)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(16, 4000, 2))
        for side in ("short", "long"):
            h2, w2 = C.fit_size(h, w, 256, 8, side)
            assert h2 % 8 == 0 and w2 % 8 == 0
            ref = (min if side == "short" else max)(h2, w2)
            assert ref == 256
            # aspect kept up to rounding the other side to the nearest multiple of 8
            if side == "short":
                other_exact = max(h, w) * 256 / min(h, w)
                assert abs(max(h2, w2) - other_exact) <= 4 + 1e-9
            else:
                other_exact = min(h, w) * 256 / max(h, w)
                assert abs(min(h2, w2) - max(8, other_exact)) <= 4 + 1e-9 or min(h2, w2) == 8
    assert C.fit_size(1080, 1920, 256) == (256, 456)
    assert C.fit_size(1080, 1920, 256, side="long") == (144, 256)
    assert C.fit_size(480, 480, 512, 64) == (512, 512)


@pytest.mark.parametrize(
    "args", [(0, 10, 256), (10, 10, 250), (10, -1, 256), (10, 10, 256, 0), (10.5, 10, 256)]
)
def test_fit_size_errors(args):
    with pytest.raises(ValueError):
        C.fit_size(*args)


def test_fit_size_bad_side():
    with pytest.raises(ValueError, match="side"):
        C.fit_size(10, 10, 256, side="middle")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(200, 300), (100, 77), (700, 650)])
def test_resize_matches_pil_bilinear(size):
    """torch antialiased bilinear == PIL's (an independent implementation), within one level."""
    img = _natural("astronaut")
    ours = C.resize_frames(img, size).astype(int)
    ref = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BILINEAR)).astype(int)
    assert ours.shape == (*size, 3)
    assert np.abs(ours - ref).max() <= 1
    assert np.abs(ours - ref).mean() < 0.25


def test_resize_antialiases_and_keeps_leading_dims():
    checker = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)
    t = torch.from_numpy(checker)[None, None, None].repeat(2, 1, 3, 1, 1)  # (2, 1, 3, H, W)
    small = C.resize(t, (32, 32))
    assert small.shape == (2, 1, 3, 32, 32)
    torch.testing.assert_close(small, torch.full_like(small, 0.5), atol=0.02, rtol=0)
    work = C.to_working_resolution(torch.rand(4, 3, 270, 480))
    assert work.shape == (4, 3, 256, 456)
