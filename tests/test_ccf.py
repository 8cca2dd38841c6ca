"""Tests for lc4.ccf: Cross-Clip Fusion layouts and eq. 8 fusion.

The layouts and the fusion are checked against small independent loop-based
reference implementations written here, plus invariants (coverage, weight
normalisation, identities) over many video lengths.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from lc4.ccf import (
    ClipLayout,
    FusionAccumulator,
    chunked_clips,
    make_layout,
    max_interval_for,
    skip_window_clips,
    sliding_window_clips,
    slot_weights,
)

# ----------------------------------------------------------------- references


def ref_skip_rows(t: int, n: int, cap: int | None = None) -> list[tuple[int, list[int]]]:
    """Naive skip-window layout: list of (interval, frames) in (d, r, position) order."""
    n = min(n, t)
    d_max = 1
    while 2 * d_max * n <= t and (cap is None or 2 * d_max <= cap):
        d_max *= 2
    rows = []
    d = 1
    while d <= d_max:
        for r in range(d):
            seq = list(range(r, t, d))
            pos = 0
            while pos < len(seq):
                clip = seq[pos:pos + n]
                if len(clip) < n:
                    clip = seq[len(seq) - n:]
                rows.append((d, clip))
                pos += n
        d *= 2
    return rows


def ref_weight(n: int, s: int, weighting: str) -> float:
    return 1.0 if weighting == "uniform" else n / 2 - abs(s - (n - 1) / 2)


def ref_fuse(layout: ClipLayout, per_clip: torch.Tensor) -> torch.Tensor:
    """Eq. 8 frame by frame with Python loops, in float64."""
    num = defaultdict(lambda: 0.0)
    den = defaultdict(float)
    x = per_clip.double()
    for k in range(layout.n_clips):
        for s in range(layout.clip_frames):
            f = int(layout.clips[k, s])
            w = float(layout.weights[k, s])
            num[f] = num[f] + w * x[k, s]
            den[f] += w
    return torch.stack([num[f] / den[f] for f in range(layout.num_frames)])


def all_layouts(t: int, n: int):
    yield skip_window_clips(t, n)
    yield skip_window_clips(t, n, weighting="uniform")
    yield sliding_window_clips(t, n)
    yield chunked_clips(t, n)


# ----------------------------------------------------------------- weights


@pytest.mark.parametrize("n", [1, 2, 5, 8, 16])
def test_slot_weights_match_eq8_and_stay_positive(n):
    w = slot_weights(n)
    expected = torch.tensor([ref_weight(n, s, "distance") for s in range(n)])
    torch.testing.assert_close(w, expected)
    assert bool((w > 0).all())
    assert torch.equal(w, w.flip(0))  # symmetric about the clip centre
    # edge slots weigh 0.5; the centre slot (odd N) weighs N/2, the two centre slots (even N) N/2 - 0.5
    assert float(w.min()) == 0.5 and float(w.max()) == pytest.approx(n / 2 - (0.5 if n % 2 == 0 else 0.0))
    assert torch.equal(slot_weights(n, "uniform"), torch.ones(n))


# ----------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    "t,n,cap,expected",
    [(64, 8, None, (1, 2, 4, 8)), (63, 8, None, (1, 2, 4)), (8, 8, None, (1,)), (7, 8, None, (1,)),
     (1, 8, None, (1,)), (256, 8, None, (1, 2, 4, 8, 16, 32)), (256, 8, 4, (1, 2, 4)),
     (256, 8, 5, (1, 2, 4)), (256, 8, 1, (1,)), (20, 8, None, (1, 2))],
)
def test_intervals_follow_largest_power_of_two(t, n, cap, expected):
    layout = skip_window_clips(t, n, max_interval=cap)
    assert layout.intervals == expected
    assert max_interval_for(t, n, cap) == expected[-1]
    d = expected[-1]
    assert d * min(n, t) <= t or t < n
    if cap is None and t >= n:
        assert 2 * d * n > t  # the next power of two would not fit


# ----------------------------------------------------------------- skip layout


@pytest.mark.parametrize("t,n", [(1, 8), (5, 8), (8, 8), (20, 8), (37, 8), (64, 8), (256, 8), (100, 5)])
def test_skip_layout_matches_reference(t, n):
    layout = skip_window_clips(t, n)
    rows = ref_skip_rows(t, n)
    assert layout.clips.tolist() == [r for _, r in rows]
    assert layout.clip_intervals.tolist() == [d for d, _ in rows]
    expected_w = [[ref_weight(layout.clip_frames, s, "distance") for s in range(layout.clip_frames)]] * len(rows)
    torch.testing.assert_close(layout.weights, torch.tensor(expected_w))


def test_skip_layout_with_cap_matches_reference():
    layout = skip_window_clips(300, 8, max_interval=8)
    assert layout.clips.tolist() == [r for _, r in ref_skip_rows(300, 8, cap=8)]


def _check_layout_invariants(layout: ClipLayout, t: int, n: int) -> None:
    n_eff = min(n, t)
    assert layout.num_frames == t
    assert layout.clips.shape[1] == n_eff  # every clip full
    assert layout.frame_evaluations == layout.n_clips * n_eff
    nw = layout.normalised_weights()
    sums = torch.zeros(t, dtype=torch.float64).index_add_(0, layout.clips.flatten(), nw.flatten().double())
    torch.testing.assert_close(sums, torch.ones(t, dtype=torch.float64), atol=1e-6, rtol=0)
    # clips are evenly spaced increasing frame runs with their recorded interval
    if n_eff > 1:
        steps = layout.clips.diff(dim=1)
        assert torch.equal(steps, layout.clip_intervals[:, None].expand_as(steps))


def test_skip_layout_invariants_for_many_lengths():
    for n in (8, 3):
        for t in range(1, 301):
            layout = skip_window_clips(t, n)
            _check_layout_invariants(layout, t, n)
            assert bool((layout.weights > 0).all())
            expected_clips = 0
            for d in layout.intervals:
                sel = layout.clip_intervals == d
                cover = torch.bincount(layout.clips[sel].flatten(), minlength=t)
                # every frame is in at least one clip of each interval; only the
                # overlap of a shifted-back clip puts a frame in a second one
                assert int(cover.min()) >= 1 and int(cover.max()) <= 2, (t, n, d)
                # each clip of interval d stays in one residue class mod d
                assert torch.equal(layout.clips[sel] % d, (layout.clips[sel][:, :1] % d).expand(-1, layout.clip_frames))
                expected_clips += sum(math.ceil(len(range(r, t, d)) / min(n, t)) for r in range(d))
            assert layout.n_clips == expected_clips


def test_short_and_single_frame_videos():
    one = skip_window_clips(1, 8)
    assert one.clips.tolist() == [[0]] and one.intervals == (1,)
    assert float(one.weights[0, 0]) > 0
    x = torch.randn(1, 1, 4)
    torch.testing.assert_close(one.fuse(x), x[0])

    short = skip_window_clips(5, 8)
    assert short.clips.tolist() == [[0, 1, 2, 3, 4]]
    torch.testing.assert_close(short.weights[0], slot_weights(5))


def test_exact_clip_length_is_one_clip_and_fuse_is_identity():
    layout = skip_window_clips(8, 8)
    assert layout.n_clips == 1 and layout.intervals == (1,)
    assert layout.clips.tolist() == [list(range(8))]
    x = torch.randn(1, 8, 4, 6, 6)
    torch.testing.assert_close(layout.fuse(x), x[0])


def test_prime_and_long_lengths():
    for t in (37, 256):
        layout = skip_window_clips(t, 8)
        _check_layout_invariants(layout, t, 8)
        for d in layout.intervals:
            sel = layout.clip_intervals == d
            assert set(layout.clips[sel].flatten().tolist()) == set(range(t))


# ----------------------------------------------------------------- fusion


@pytest.mark.parametrize("t,n", [(1, 8), (6, 8), (20, 8), (37, 8), (50, 4)])
def test_fuse_matches_loop_reference(t, n):
    g = torch.Generator().manual_seed(t)
    for layout in all_layouts(t, n):
        per_clip = torch.randn(layout.n_clips, layout.clip_frames, 3, generator=g, dtype=torch.float64)
        torch.testing.assert_close(layout.fuse(per_clip), ref_fuse(layout, per_clip))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("trailing", [(), (4,), (2, 3, 5)])
def test_fuse_of_scatter_is_identity_and_constant_is_kept(dtype, trailing):
    g = torch.Generator().manual_seed(0)
    for t in (3, 20, 37, 64):
        for layout in all_layouts(t, 8):
            per_frame = torch.randn(t, *trailing, generator=g).to(dtype)
            scattered = layout.scatter(per_frame)
            assert scattered.shape == (layout.n_clips, layout.clip_frames, *trailing)
            fused = layout.fuse(scattered)
            assert fused.dtype == dtype and fused.shape == per_frame.shape
            # sums run in float32, so low-precision inputs round-trip to within one ulp
            tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3}.get(dtype, 1e-6)
            torch.testing.assert_close(fused, per_frame, atol=tol, rtol=tol)
            const = torch.full((layout.n_clips, layout.clip_frames, *trailing), 0.3, dtype=dtype)
            expected = torch.full((t, *trailing), 0.3, dtype=dtype)
            torch.testing.assert_close(layout.fuse(const), expected, atol=tol, rtol=tol)


def test_uniform_weighting_is_plain_mean_of_occurrences():
    layout = skip_window_clips(37, 8, weighting="uniform")
    per_clip = torch.randn(layout.n_clips, 8, dtype=torch.float64)
    counts = torch.bincount(layout.clips.flatten(), minlength=37).double()
    sums = torch.zeros(37, dtype=torch.float64).index_add_(0, layout.clips.flatten(), per_clip.flatten())
    torch.testing.assert_close(layout.fuse(per_clip), sums / counts)


def test_distance_weighting_favours_the_clip_centre():
    # frame 12 of T=20 sits in slot 4 of clip 1 (weight 3.5) and slot 0 of clip 2 (0.5) at d=1
    layout = skip_window_clips(20, 8, max_interval=1)
    per_clip = torch.zeros(layout.n_clips, 8)
    per_clip[1] = 1.0
    assert float(layout.fuse(per_clip)[12]) == pytest.approx(3.5 / 4.0)


def test_accumulator_equals_fuse_exactly_for_any_chunking():
    g = torch.Generator().manual_seed(1)
    for t in (5, 37, 100):
        for layout in all_layouts(t, 8):
            per_clip = torch.randn(layout.n_clips, layout.clip_frames, 2, 3, generator=g)
            full = layout.fuse(per_clip)
            for size in (1, 3, layout.n_clips):
                acc = FusionAccumulator(t, (2, 3), torch.float32, "cpu")
                for sl in layout.chunks(size):
                    acc.add(layout.clips[sl], per_clip[sl], layout.weights[sl])
                assert torch.equal(acc.result(), full), (t, layout.mode, size)


def test_accumulator_refuses_result_with_missing_chunk():
    layout = skip_window_clips(40, 8)
    acc = layout.accumulator((), torch.float32)
    first = next(layout.chunks(2))
    acc.add(layout.clips[first], torch.ones(2, 8), layout.weights[first])
    with pytest.raises(ValueError, match="no fused value"):
        acc.result()


def test_chunks_cover_all_clips_in_order():
    layout = skip_window_clips(100, 8)
    for size in (1, 4, 7, layout.n_clips, layout.n_clips + 5):
        slices = list(layout.chunks(size))
        idx = [i for sl in slices for i in range(sl.start, sl.stop)]
        assert idx == list(range(layout.n_clips))
        assert all(0 < sl.stop - sl.start <= size for sl in slices)


# ----------------------------------------------------------------- ablations


def test_sliding_window_invariants():
    for n in (8, 5):
        for t in range(1, 120):
            layout = sliding_window_clips(t, n)
            _check_layout_invariants(layout, t, n)
            starts = layout.clips[:, 0].tolist()
            stride = max(1, n // 2)
            assert starts[0] == 0 and int(layout.clips[-1, -1]) == t - 1
            assert all(b - a == stride for a, b in zip(starts[:-2], starts[1:-1]))
            assert 0 < starts[-1] - starts[-2] <= stride if len(starts) > 1 else True
            assert int(torch.bincount(layout.clips.flatten(), minlength=t).min()) >= 1
    custom = sliding_window_clips(30, 8, stride=3)
    assert custom.clips[:3, 0].tolist() == [0, 3, 6]


def test_chunked_takes_each_frame_from_exactly_one_clip():
    for t in range(1, 80):
        layout = chunked_clips(t, 8)
        _check_layout_invariants(layout, t, 8)
        owners = torch.bincount(layout.clips[layout.weights > 0], minlength=t)
        assert torch.equal(owners, torch.ones(t, dtype=torch.int64))
        nw = layout.normalised_weights()
        assert bool(((nw == 0) | (nw == 1)).all())
        # stitching: fusing gives each frame the value of the first clip that holds it
        per_clip = torch.arange(layout.n_clips, dtype=torch.float32)[:, None].expand(-1, layout.clip_frames)
        first_clip = [min(k for k in range(layout.n_clips) if f in layout.clips[k].tolist()) for f in range(t)]
        assert layout.fuse(per_clip).tolist() == [float(k) for k in first_clip]


def test_make_layout_dispatches():
    assert make_layout(37, 8).clips.tolist() == skip_window_clips(37, 8).clips.tolist()
    assert make_layout(37, 8, mode="skip", max_interval=2).intervals == (1, 2)
    assert make_layout(37, 8, mode="sliding").clips.tolist() == sliding_window_clips(37, 8).clips.tolist()
    none = make_layout(37, 8, mode="none", weighting="uniform")
    assert none.mode == "none" and none.weighting == "uniform" and not none.fuses_features
    assert make_layout(37, 8).fuses_features and make_layout(37, 8, mode="sliding").fuses_features
    assert make_layout(37, 8, weighting="uniform").weights.unique().tolist() == [1.0]


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [lambda: skip_window_clips(0), lambda: skip_window_clips(-3), lambda: skip_window_clips(2.5),
     lambda: skip_window_clips(True), lambda: skip_window_clips(10, 0), lambda: skip_window_clips(10, 8, 0),
     lambda: sliding_window_clips(10, 8, stride=9), lambda: sliding_window_clips(10, 8, stride=0),
     lambda: make_layout(10, mode="tiled"), lambda: make_layout(10, weighting="gauss"),
     lambda: slot_weights(0)],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_bad_tensors_raise_value_error():
    layout = skip_window_clips(20, 8)
    with pytest.raises(ValueError, match=r"\(7, 8\)"):
        layout.fuse(torch.zeros(6, 8))
    with pytest.raises(ValueError, match="floating-point"):
        layout.fuse(torch.zeros(7, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="20 frames"):
        layout.scatter(torch.zeros(19, 3))
    with pytest.raises(ValueError, match="max_clips"):
        list(layout.chunks(0))
    acc = layout.accumulator((3,))
    with pytest.raises(ValueError, match=r"\[0, 19\]"):
        acc.add(torch.tensor([[20]]), torch.zeros(1, 1, 3), torch.ones(1, 1))
    with pytest.raises(ValueError, match="values must have shape"):
        acc.add(torch.tensor([[0]]), torch.zeros(1, 1, 4), torch.ones(1, 1))


def test_layout_rejects_uncovered_frames():
    with pytest.raises(ValueError, match="frame 2"):
        ClipLayout(num_frames=3, clips=torch.tensor([[0, 1]]), weights=torch.ones(1, 2),
                   intervals=(1,), clip_intervals=torch.ones(1, dtype=torch.int64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fuse_on_cuda_matches_cpu():
    layout = skip_window_clips(64, 8)
    per_clip = torch.randn(layout.n_clips, 8, 4, 8, 8)
    out = layout.fuse(per_clip.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), layout.fuse(per_clip), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layout.scatter(out).cpu(), layout.scatter(layout.fuse(per_clip)), atol=1e-5, rtol=1e-5)
