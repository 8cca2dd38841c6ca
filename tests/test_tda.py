"""Temporally Deformable Attention: sampling maths, axis order, variants, any clip length."""

import itertools
import math

import pytest
import torch
from einops import rearrange

from lc4.models.tda import (
    ClipGeometry,
    DeformableSampler,
    DistanceBias,
    FixedTemporalAttention,
    TemporalConv3d,
    TemporalDeformableAttention,
    make_temporal_module,
    reference_positions,
    trilinear_sample,
)


def explicit_trilinear(x: torch.Tensor, px: float, py: float, pt: float) -> torch.Tensor:
    """Eq. 2 written out: Σ g(px, rx) g(py, ry) g(pt, rt) h[rt, ry, rx] over every cell (zeros outside)."""
    _, frames, height, width = x.shape
    g = lambda a, b: max(0.0, 1.0 - abs(a - b))  # noqa: E731
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    for rt, ry, rx in itertools.product(range(frames), range(height), range(width)):
        w = g(px, rx) * g(py, ry) * g(pt, rt)
        if w:
            out += w * x[:, rt, ry, rx].double()
    return out


def test_reference_grid_is_uniform_and_centred():
    assert torch.allclose(reference_positions(8, 2), torch.tensor([0.5, 2.5, 4.5, 6.5]))
    assert torch.allclose(reference_positions(1, 2), torch.tensor([0.0]))
    pos = reference_positions(5, 2)
    assert len(pos) == 3 and torch.allclose(pos[1:] - pos[:-1], torch.full((2,), 5 / 3))
    assert torch.allclose(pos.mean(), torch.tensor(2.0))  # symmetric about the clip centre


def test_zero_offsets_match_explicit_trilinear_interpolation():
    torch.manual_seed(0)
    sampler = DeformableSampler(dim=5, spatial_stride=2, temporal_stride=2)
    x = torch.randn(2, 5, 5, 6, 7)  # odd, unequal sizes everywhere
    out = sampler(x)  # offset head is zero-initialised: Δp = 0
    ref = sampler.reference_grid(5, 6, 7)
    assert out.shape == (2, 5, 3, 3, 4)
    for b in range(2):
        for t, y, xx in itertools.product(range(3), range(3), range(4)):
            px, py, pt = ref[t, y, xx].tolist()
            expected = explicit_trilinear(x[b], px, py, pt)
            assert torch.allclose(out[b, :, t, y, xx].double(), expected, atol=1e-5)


def test_random_fractional_positions_match_explicit_formula_including_outside():
    torch.manual_seed(1)
    x = torch.randn(1, 3, 4, 5, 6)
    pos = torch.empty(1, 2, 2, 3, 3).uniform_(-1.5, 6.5)  # some points fall outside the clip
    out = trilinear_sample(x, pos)
    for t, y, xx in itertools.product(range(2), range(2), range(3)):
        px, py, pt = pos[0, t, y, xx].tolist()
        assert torch.allclose(out[0, :, t, y, xx].double(), explicit_trilinear(x[0], px, py, pt), atol=1e-5)


def test_whole_cell_offsets_pick_exact_features_and_axis_order():
    """Stride 1 puts reference points on cells; a whole-cell offset along one axis reads that neighbour."""
    torch.manual_seed(2)
    f, h, w = 3, 4, 5  # all different, so a swapped axis cannot pass
    x = torch.randn(1, 2, f, h, w)
    sampler = DeformableSampler(dim=2, spatial_stride=1, temporal_stride=1)
    for axis, (dx, dy, dt) in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (-2, 1, -1)]):
        offsets = torch.tensor([dx, dy, dt], dtype=torch.float32).expand(1, f, h, w, 3)
        out = sampler(x, offsets=offsets)
        for t, y, xx in itertools.product(range(f), range(h), range(w)):
            st, sy, sx = t + dt, y + dy, xx + dx
            inside = 0 <= st < f and 0 <= sy < h and 0 <= sx < w
            expected = x[0, :, st, sy, sx] if inside else torch.zeros(2)
            assert torch.allclose(out[0, :, t, y, xx], expected, atol=1e-6), (axis, t, y, xx)


def test_predicted_offsets_are_bounded_by_alpha():
    torch.manual_seed(3)
    sampler = DeformableSampler(dim=8, alpha=4.0)
    torch.nn.init.normal_(sampler.offset_net[-1].weight, std=10.0)
    off = sampler.offsets(torch.randn(1, 8, 4, 6, 6))
    assert off.shape == (1, 2, 3, 3, 3)
    assert off.abs().max() <= 4.0 + 1e-6 and off.abs().max() > 1.0


def _hidden(batch, frames, h, w, dim, seed=0):
    torch.manual_seed(seed)
    return torch.randn(batch * frames, h * w, dim)


@pytest.mark.parametrize("kind, options", [("tda", {}), ("tda", {"position_bias": True}),
                                           ("temporal_attention", {}), ("conv3d", {})])
def test_temporal_modules_start_at_zero_and_work_for_any_length(kind, options):
    for frames in (1, 2, 3, 5, 8, 9):
        module = make_temporal_module(kind, dim=16, heads=2, dim_head=8, **options)
        hidden = _hidden(2, frames, 5, 3, 16)
        out = module(hidden, ClipGeometry(frames, 5, 3))
        assert out.shape == hidden.shape
        assert torch.count_nonzero(out) == 0  # zero-initialised output projection
        torch.nn.init.normal_(list(module.parameters())[-2], std=0.1)  # move the output layer
        out = module(hidden, ClipGeometry(frames, 5, 3))
        assert torch.isfinite(out).all() and out.abs().sum() > 0


def reference_tda(tda: TemporalDeformableAttention, hidden: torch.Tensor, f: int, h: int, w: int,
                  bias=None) -> torch.Tensor:
    """TDA's output computed independently, clip by clip and head by head: softmax(q kᵀ/√d + bias) v
    over the trilinearly sampled points; `bias(head, query_pos, key_pos)` gives a head's logit bias
    from the query cells' and the deformed points' (x, y, t)."""
    d = tda.to_q.out_features // tda.heads
    x = tda.norm(hidden)
    clip = rearrange(x, "(b f) (h w) c -> b c f h w", f=f, h=h)
    pos = tda.sampler.reference_grid(f, h, w) + tda.sampler.offsets(clip)
    tt, yy, xx = torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij")
    query_pos = torch.stack([xx, yy, tt], -1).reshape(-1, 3).float()
    clips = []
    for b in range(clip.shape[0]):
        ctx = rearrange(trilinear_sample(clip[b : b + 1], pos[b : b + 1]), "b c f h w -> b (f h w) c")[0]
        q = tda.to_q(x[b * f : (b + 1) * f].reshape(-1, x.shape[-1]))
        k, v = tda.to_k(ctx), tda.to_v(ctx)
        heads_out = []
        for i in range(tda.heads):
            s = slice(d * i, d * (i + 1))
            logits = q[:, s] @ k[:, s].T / math.sqrt(d)
            if bias is not None:
                logits = logits + bias(i, query_pos, pos[b].reshape(-1, 3))
            heads_out.append(torch.softmax(logits, dim=-1) @ v[:, s])
        clips.append(rearrange(tda.to_out(torch.cat(heads_out, -1)), "(f n) c -> f n c", f=f))
    return torch.cat(clips)


def test_tda_equals_reference_attention_over_sampled_points():
    """TDA's output = softmax(q kᵀ/√d) v over trilinearly sampled points, computed independently."""
    torch.manual_seed(4)
    dim, heads, f, h, w = 8, 2, 4, 4, 4
    tda = TemporalDeformableAttention(dim, heads, 4)
    for p in tda.parameters():
        torch.nn.init.normal_(p, std=0.3)
    hidden = _hidden(1, f, h, w, dim)
    assert torch.allclose(tda(hidden, ClipGeometry(f, h, w)), reference_tda(tda, hidden, f, h, w), atol=1e-5)


def test_distance_bias_tda_equals_reference_attention_with_gaussian_logit_bias():
    """With `position_bias`, logits gain −Δxy²/2σ_s² − Δt²/2σ_t² between each query cell and each
    deformed sampling point, per head; computed here over the whole clip at once."""
    torch.manual_seed(6)
    dim, heads, f, h, w = 8, 2, 3, 4, 5
    tda = TemporalDeformableAttention(dim, heads, 4, position_bias=True)
    for p in tda.parameters():
        torch.nn.init.normal_(p, std=0.3)
    hidden = _hidden(2, f, h, w, dim)
    sigma = tda.distance_bias.log_sigma.exp()

    def gaussian(head, query_pos, key_pos):
        d = query_pos[:, None] - key_pos[None]
        return -d[..., :2].square().sum(-1) / (2 * sigma[head, 0] ** 2) - d[..., 2].square() / (2 * sigma[head, 1] ** 2)

    expected = reference_tda(tda, hidden, f, h, w, bias=gaussian)
    assert torch.allclose(tda(hidden, ClipGeometry(f, h, w)), expected, atol=1e-5)


def test_distance_bias_starts_local_to_global_and_narrow_heads_read_their_own_place():
    """At start the heads' σ_s run from one compressed cell to 16; a narrow head reads the same place in
    the other frames, so a change at one cell reaches that cell's neighbours, not the far corner."""
    tda = TemporalDeformableAttention(8, 4, 4, spatial_stride=1, temporal_stride=1, position_bias=True)
    sigma = tda.distance_bias.log_sigma.exp()
    assert torch.allclose(sigma[:, 0], torch.tensor([1.0, 2.52, 6.35, 16.0]), atol=0.01)
    assert torch.allclose(sigma[:, 1], torch.full((4,), 4.0))
    with torch.no_grad():
        tda.distance_bias.log_sigma[:, 0] = math.log(0.3)  # every head narrow
    torch.manual_seed(7)
    torch.nn.init.normal_(tda.to_out.weight, std=0.5)
    f, h, w = 4, 6, 6
    hidden = _hidden(1, f, h, w, 8)
    moved = hidden.clone()
    moved[0, 0] += 5.0 * torch.randn(8)  # frame 0, cell (0, 0)
    g = ClipGeometry(f, h, w)
    change = (tda(moved, g) - tda(hidden, g)).abs().sum(-1)  # (frames, cells)
    assert change[1:, 0].min() > 1e-3  # the same cell of every other frame reads it
    assert change[1:, -1].max() < 1e-6 * change[1:, 0].min()  # the far corner does not


def test_border_padding_reads_the_nearest_frame_where_zeros_padding_reads_nothing():
    """Points pushed α = 4 frames past a 3-frame clip: eq. 2's zeros give zeros, `border` the last frame."""
    x = torch.randn(1, 2, 3, 4, 4)
    zeros, border = DeformableSampler(2, 1, 1), DeformableSampler(2, 1, 1, padding="border")
    late = torch.zeros(1, 3, 4, 4, 3)
    late[..., 2] = 4.0
    assert torch.count_nonzero(zeros(x, late)) == 0
    assert torch.allclose(border(x, late), x[:, :, -1:].expand(-1, -1, 3, -1, -1), atol=1e-6)
    with pytest.raises(ValueError, match="padding"):
        DeformableSampler(2, padding="reflect")


def test_position_bias_and_padding_are_checked():
    from lc4.models.config import LC4Config

    with pytest.raises(ValueError, match="temporal.position_bias"):
        LC4Config.from_dict({"base": "tiny", "temporal": {"position_bias": "yes"}}).validate()
    with pytest.raises(ValueError, match="temporal.padding"):
        LC4Config.from_dict({"base": "tiny", "temporal": {"padding": "wrap"}}).validate()
    for bad in ([2.0, 1.0], [0.0, 1.0], [1.0], "wide", [1.0, float("nan")], [True, 2.0]):
        with pytest.raises(ValueError, match="temporal.position_bias_sigma"):
            LC4Config.from_dict({"base": "tiny", "temporal": {"position_bias_sigma": bad}}).validate()


def test_position_bias_sigma_sets_the_heads_start_widths():
    """`position_bias_sigma` = (low, high) compressed cells, log-spaced over the heads, × the spatial stride."""
    narrow = TemporalDeformableAttention(8, 4, 4, spatial_stride=1, temporal_stride=1, position_bias=True,
                                         position_bias_sigma=(0.5, 1.0))
    assert torch.allclose(narrow.distance_bias.log_sigma.exp()[:, 0], torch.tensor([0.5, 0.63, 0.794, 1.0]), atol=1e-3)
    strided = DistanceBias(2, spatial_stride=2, sigma=(3.0, 3.0))
    assert torch.allclose(strided.log_sigma.exp()[:, 0], torch.full((2,), 6.0))


def test_tda_mixes_frames_but_fixed_attention_stays_at_its_location():
    """A change at one spatial cell of one frame reaches other cells of other frames only through TDA."""
    torch.manual_seed(5)
    f, h, w, dim = 4, 4, 4, 8
    tda = TemporalDeformableAttention(dim, 2, 4, spatial_stride=1, temporal_stride=1)
    fixed = FixedTemporalAttention(dim, 2, 4)
    for m in (tda, fixed):
        torch.nn.init.normal_(m.to_out.weight, std=0.5)
    hidden = _hidden(1, f, h, w, dim)
    moved = hidden.clone()
    moved[0, 0] += 5.0 * torch.randn(dim)  # frame 0, cell (0, 0); not a constant (LayerNorm cancels those)
    g = ClipGeometry(f, h, w)
    d_tda = (tda(moved, g) - tda(hidden, g)).abs().sum(-1)
    d_fixed = (fixed(moved, g) - fixed(hidden, g)).abs().sum(-1)
    assert d_tda[1:, 5].max() > 1e-4  # another frame, another cell
    assert d_fixed[1:, 1:].max() < 1e-6 and d_fixed[1:, 0].max() > 1e-4


def test_conv3d_variant_is_local():
    conv = TemporalConv3d(8)
    torch.nn.init.normal_(conv.conv[-1].weight, std=0.5)
    hidden = _hidden(1, 6, 6, 6, 8)
    moved = hidden.clone()
    moved[0, 0] += 3.0 * torch.randn(8)
    d = (conv(moved, ClipGeometry(6, 6, 6)) - conv(hidden, ClipGeometry(6, 6, 6))).abs().sum(-1)
    assert d[1, 1] > 0 and d[3].max() == 0  # 3×3×3 receptive field: frame 3 untouched


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown temporal module"):
        make_temporal_module("global", 8, 2, 4)
