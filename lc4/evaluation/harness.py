"""``evaluate``: score a folder of colourised videos against a folder of ground truths.

Videos are matched by name (see :mod:`lc4.evaluation.discover` for layouts), both resized to
``resolution``² without crop (the paper's 256×256 protocol; ``None`` keeps native sizes, which
must then agree), and scored. Frame-level metrics (Color., PSNR, SSIM, LPIPS, CLIP) are averaged
per video and then over videos; CDC and E_warp are per video, then averaged; FVD and FID are
computed once over the whole set. A metric whose weights are missing or unreadable is reported as
n/a with a note naming the file.

Mismatches are never scored silently: a prediction whose frame count differs from its ground truth
is an error with ``strict=True``, otherwise it is scored on the common first frames with a warning
and a per-video flag; CDC and E_warp are n/a (flagged) for a video with fewer than 2 frames, so a
prediction cut to one frame cannot score a perfect temporal consistency; predictions without a
ground truth are listed in a warning (an error with ``strict=True``). Warnings go to the
``lc4.evaluation`` logger and into the report's notes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from lc4.metrics.cdc import DEFAULT_INTERVALS, cdc_per_channel
from lc4.metrics.colorfulness import COLORFULNESS_VARIANTS, colorfulness_per_frame
from lc4.metrics.psnr import psnr_per_frame
from lc4.metrics.ssim import ssim_per_frame

from .discover import discover_videos
from .prompts import load_prompts
from .protocol import sequence_list
from .report import ALL_METRICS, PAPER_METRICS, Report

__all__ = ["parse_metrics", "evaluate"]

logger = logging.getLogger("lc4.evaluation")
#: temporal metrics need a pair of frames; with fewer they are n/a (never a perfect 0)
MIN_TEMPORAL_FRAMES = 2

_ALIASES = {
    "color": "colorfulness",
    "colourfulness": "colorfulness",
    "colorfulness": "colorfulness",
    "cf": "colorfulness",
    "clip": "clip_score",
    "clipscore": "clip_score",
    "warp": "warp_error",
    "ewarp": "warp_error",
}


def parse_metrics(metrics: str | Iterable[str] | None, with_prompts: bool = False) -> list[str]:
    """Canonical metric names in table order. None → the paper's six (+ clip_score with prompts).

    Accepts a list or a comma-separated string; ``all`` selects every metric.
    """
    if metrics is None:
        return list(PAPER_METRICS) + (["clip_score"] if with_prompts else [])
    items = metrics.split(",") if isinstance(metrics, str) else [p for m in metrics for p in str(m).split(",")]
    chosen = set()
    for raw in items:
        key = raw.strip().lower().replace("-", "_")
        if not key:
            continue
        if key == "all":
            chosen.update(ALL_METRICS)
            continue
        key = _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))
        if key not in ALL_METRICS:
            raise ValueError(f"unknown metric {raw.strip()!r}; choose from {', '.join(ALL_METRICS)} or all")
        chosen.add(key)
    if not chosen:
        raise ValueError("no metrics selected")
    return [m for m in ALL_METRICS if m in chosen]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _names(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" … (+{len(names) - limit} more)" if len(names) > limit else "")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (FileNotFoundError, ImportError, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _try_load(metric: str, loader: Callable[[], Any], notes: list[str]) -> Any:
    """The loaded network, or None with a note (missing file: where to put it; damaged file: its path)."""
    try:
        return loader()
    except FileNotFoundError as exc:
        notes.append(f"{metric}: n/a — {_one_line(exc)}")
    except Exception as exc:  # a damaged weight file must not end the whole evaluation
        message = f"{metric}: n/a — {_one_line(exc)}"
        notes.append(message)
        logger.warning(message)
    return None


def evaluate(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    prompts: str | os.PathLike | Mapping[str, str] | None = None,
    resolution: int | None = 256,
    metrics: str | Iterable[str] | None = None,
    *,
    sequences: str | os.PathLike | Iterable[str] | None = None,
    strict: bool = False,
    weights_dir: str | os.PathLike | None = None,
    clip_model: str | os.PathLike | None = None,
    colorfulness_variant: str = "signed",
    device: str | None = None,
    flow_fn: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    fvd_clip_frames: int = 16,
    psnr_cap: float = 100.0,
    name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Evaluate the videos in ``pred_dir`` against ``gt_dir``; returns a :class:`Report`.

    ``sequences`` restricts to a test list (``"davis30"``, ``"videvo20"``, a text file or names);
    names missing on either side are skipped with a warning, or raise with ``strict=True``.
    ``strict=True`` also makes a frame-count mismatch and a prediction without ground truth errors;
    otherwise a mismatched video is scored on its common first frames and flagged, and CDC / E_warp
    are n/a (flagged) for a video with fewer than 2 frames scored.
    ``clip_model`` is a local transformers CLIP folder (CLIP score needs it and ``prompts``);
    ``flow_fn(frame_a, frame_b) -> (H, W, 2)`` enables E_warp. ``psnr_cap`` (dB) bounds each
    frame's PSNR in the ``psnr_capped`` column only.
    """
    if colorfulness_variant not in COLORFULNESS_VARIANTS:
        raise ValueError(f"colorfulness_variant must be one of {COLORFULNESS_VARIANTS}; got {colorfulness_variant!r}")
    if resolution is not None and int(resolution) < 1:
        raise ValueError(f"resolution must be a positive number of pixels or None; got {resolution}")
    if int(fvd_clip_frames) < 1:
        raise ValueError(f"fvd_clip_frames must be >= 1; got {fvd_clip_frames}")
    say = log or (lambda _msg: None)
    prompt_map = load_prompts(prompts)
    chosen = parse_metrics(metrics, with_prompts=bool(prompt_map))
    preds, gts = discover_videos(pred_dir), discover_videos(gt_dir)
    wanted = list(sequence_list(sequences)) if sequences is not None else list(gts)
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        logger.warning(message)

    missing_gt = [n for n in wanted if n not in gts]
    missing_pred = [n for n in wanted if n in gts and n not in preds]
    for label, miss in (("ground truth", missing_gt), ("predictions", missing_pred)):
        if miss:
            msg = f"{len(miss)} video(s) missing from the {label}: {_names(miss)}"
            if strict:
                raise ValueError(msg)
            warn(msg + " (skipped)")
    # predictions that match no ground truth are not scored; never silently
    orphans = [n for n in preds if n not in gts and n not in missing_gt]
    if orphans:
        msg = f"{len(orphans)} prediction(s) have no ground truth in {gt_dir} and are not scored: {_names(orphans)}"
        if sequences is not None:  # outside the requested list: reported, not an error
            warn(msg + " (not in the sequence list either)")
        elif strict:
            raise ValueError(msg)
        else:
            warn(msg)
    names = [n for n in wanted if n in gts and n in preds]
    if not names:
        raise ValueError(f"no videos to evaluate: none of the {len(wanted)} ground-truth names has a prediction in {pred_dir}")
    if strict:  # frame folders are counted before any network is loaded; video files once decoded
        for seq in names:
            tp, tg = preds[seq].frame_count(), gts[seq].frame_count()
            if tp is not None and tg is not None and tp != tg:
                raise ValueError(_length_message(seq, tp, tg, strict=True))
    device = device or _default_device()

    lpips_model = i3d = inception = scorer = None
    if "lpips" in chosen:
        from lc4.metrics.lpips import load_lpips

        lpips_model = _try_load("lpips", lambda: load_lpips(weights_dir, device=device), notes)
    if "fvd" in chosen:
        from lc4.metrics.fvd import load_i3d

        i3d = _try_load("fvd", lambda: load_i3d(weights_dir=weights_dir, device=device), notes)
    if "fid" in chosen:
        from lc4.metrics.fid import load_inception

        inception = _try_load("fid", lambda: load_inception(weights_dir=weights_dir, device=device), notes)
    if "clip_score" in chosen:
        if not prompt_map:
            notes.append("clip_score: n/a — no prompts were given (--prompts)")
        elif clip_model is None:
            notes.append("clip_score: n/a — no CLIP model folder was given (clip_model / --clip-model)")
        else:
            from lc4.metrics.clip_score import CLIPScorer

            scorer = _try_load("clip_score", lambda: CLIPScorer.from_pretrained(clip_model, device=device), notes)
    if "warp_error" in chosen and flow_fn is None:
        notes.append("warp_error: n/a — needs an optical-flow function (flow_fn); none ships with lc4")

    per_video: dict[str, dict[str, Any]] = {}
    feats: dict[str, list[np.ndarray]] = {"fvd_pred": [], "fvd_gt": [], "fid_pred": [], "fid_gt": []}
    no_prompt: list[str] = []
    too_short: dict[str, list[str]] = {"cdc": [], "warp_error": []}
    for i, seq in enumerate(names, start=1):
        pred, gt = preds[seq].read(resolution), gts[seq].read(resolution)
        flags: list[str] = []
        counts: dict[str, int] = {}
        tp, tg = int(pred.shape[0]), int(gt.shape[0])
        if tp != tg:
            if strict:
                raise ValueError(_length_message(seq, tp, tg, strict=True))
            t = min(tp, tg)
            warn(_length_message(seq, tp, tg, strict=False))
            flags.append(f"length mismatch: {tp} predicted vs {tg} ground-truth frames, first {t} scored")
            counts = {"pred_frames": tp, "gt_frames": tg}
            pred, gt = pred[:t], gt[:t]
        if pred.shape[0] == 0:
            warn(f"{seq}: no frames to compare (skipped)")
            continue
        if pred.shape != gt.shape:
            raise ValueError(
                f"{seq}: predicted frames are {pred.shape[2]}x{pred.shape[1]} but ground truth is {gt.shape[2]}x{gt.shape[1]}; "
                "pass a resolution to resize both"
            )
        vals: dict[str, Any] = {"frames": int(pred.shape[0]), **counts}
        if "colorfulness" in chosen:
            vals["colorfulness"] = float(colorfulness_per_frame(pred, colorfulness_variant).mean())
        if "psnr" in chosen:
            per_frame = psnr_per_frame(pred, gt)
            vals["psnr"] = float(per_frame.mean())
            vals["psnr_capped"] = float(np.minimum(per_frame, psnr_cap).mean())
        if "ssim" in chosen:
            vals["ssim"] = float(ssim_per_frame(pred, gt).mean())
        if "lpips" in chosen:
            if lpips_model is not None:
                from lc4.metrics.lpips import lpips_per_frame

                vals["lpips"] = float(lpips_per_frame(pred, gt, lpips_model).mean())
            else:
                vals["lpips"] = None
        if "fvd" in chosen:
            vals["fvd"] = None
            if i3d is not None:
                from lc4.metrics.fvd import i3d_features

                try:
                    fp = i3d_features([pred], i3d, fvd_clip_frames, device=device)
                    fg = i3d_features([gt], i3d, fvd_clip_frames, device=device)
                except Exception as exc:  # a TorchScript file that is not the I3D detector
                    warn(f"fvd: n/a — the I3D detector (i3d_torchscript.pt) failed on {seq}: {_one_line(exc)}")
                    i3d, feats["fvd_pred"], feats["fvd_gt"] = None, [], []
                else:
                    feats["fvd_pred"].append(fp)
                    feats["fvd_gt"].append(fg)
        if "cdc" in chosen:
            if pred.shape[0] < MIN_TEMPORAL_FRAMES:  # no pair of frames: not a perfect 0
                vals["cdc"] = vals["cdc_raw"] = None
                too_short["cdc"].append(seq)
                flags.append(f"cdc n/a: {pred.shape[0]} frame(s) scored, CDC needs at least {MIN_TEMPORAL_FRAMES}")
            else:
                raw = float(cdc_per_channel(pred).mean())
                vals["cdc"], vals["cdc_raw"] = raw * 1000.0, raw
        if "fid" in chosen:
            vals["fid"] = None
            if inception is not None:
                from lc4.metrics.fid import inception_features

                try:
                    fp = inception_features([pred], inception, device=device)
                    fg = inception_features([gt], inception, device=device)
                except Exception as exc:  # a TorchScript file that is not the Inception detector
                    warn(f"fid: n/a — the Inception detector (inception-2015-12-05.pt) failed on {seq}: {_one_line(exc)}")
                    inception, feats["fid_pred"], feats["fid_gt"] = None, [], []
                else:
                    feats["fid_pred"].append(fp)
                    feats["fid_gt"].append(fg)
        if "clip_score" in chosen:
            vals["clip_score"] = None
            if scorer is not None:
                if seq in prompt_map:
                    vals["clip_score"] = float(scorer.score_per_frame(pred, prompt_map[seq]).mean())
                else:
                    no_prompt.append(seq)
        if "warp_error" in chosen:
            vals["warp_error"] = None
            if flow_fn is not None:
                if pred.shape[0] < MIN_TEMPORAL_FRAMES:
                    too_short["warp_error"].append(seq)
                    flags.append(f"warp_error n/a: {pred.shape[0]} frame(s) scored, E_warp needs at least {MIN_TEMPORAL_FRAMES}")
                else:
                    from lc4.metrics.warp import warp_error

                    vals["warp_error"] = warp_error(pred, flow_fn)
        if flags:
            vals["flags"] = flags
        per_video[seq] = vals
        say(f"[{i}/{len(names)}] {seq}: {vals['frames']} frames" + (f" ({'; '.join(flags)})" if flags else ""))
    if not per_video:
        raise ValueError(f"no videos to evaluate: every matched prediction in {pred_dir} has 0 frames to compare")
    if no_prompt:
        notes.append(f"clip_score: {len(no_prompt)} video(s) without a prompt are n/a: {', '.join(no_prompt[:10])}")
    for metric, short in too_short.items():
        if short:
            warn(
                f"{metric}: n/a for {len(short)} video(s) with fewer than {MIN_TEMPORAL_FRAMES} frames scored "
                f"(no pair of frames to compare; the set mean leaves them out): {_names(short)}"
            )

    dataset: dict[str, float | None] = {}
    for key in ("colorfulness", "psnr", "psnr_capped", "ssim", "lpips", "cdc", "cdc_raw", "clip_score", "warp_error"):
        if any(key in v for v in per_video.values()):
            dataset[key] = _mean([v.get(key) for v in per_video.values()])
    from lc4.metrics.frechet import frechet_distance, gaussian_stats

    for metric in ("fvd", "fid"):
        if metric not in chosen:
            continue
        dataset[metric] = None
        fp, fg = feats[f"{metric}_pred"], feats[f"{metric}_gt"]
        if fp:
            a, b = np.concatenate(fp), np.concatenate(fg)
            if a.shape[0] < 2 or b.shape[0] < 2:
                notes.append(f"{metric}: n/a — needs at least 2 samples per side; got {a.shape[0]} and {b.shape[0]}")
            else:
                dataset[metric] = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
                if a.shape[0] <= a.shape[1]:
                    notes.append(
                        f"{metric}: {a.shape[0]} samples for {a.shape[1]}-d features; covariances are rank-deficient, "
                        "so the value is only comparable at the same sample count"
                    )

    conventions = {
        "color order": "RGB, 8-bit",
        "resolution": f"{int(resolution)}x{int(resolution)}, bicubic, no crop" if resolution is not None else "native",
        "averaging": "frame metrics: mean over frames per video, then mean over videos; FVD/FID over the whole set",
        "colorfulness": f"Hasler & Süsstrunk, {colorfulness_variant} opponent channels, 0-255 units",
        "cdc": f"TCVC JS divergence, intervals {list(DEFAULT_INTERVALS)} weighted equally, column CDC ×1000 (cdc_raw unscaled)",
        "psnr": f"peak 255, float64; identical frames give inf; psnr_capped clips each frame at {psnr_cap:g} dB",
        "ssim": "Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, population covariance, mean over RGB",
        "lpips": "AlexNet, lpips v0.1 linear heads, inputs in [-1, 1]",
        "fvd": f"I3D TorchScript (StyleGAN-V), non-overlapping {int(fvd_clip_frames)}-frame clips, population covariance",
    }
    conventions["fid"] = "Inception TorchScript (StyleGAN2-ADA), every frame a sample, population covariance"
    conventions["clip_score"] = "100 * max(cos, 0), mean over frames"
    conventions["warp_error"] = "Lai et al. 2018, frames in [0, 1], squared error over in-frame flow targets"
    general = ("color order", "resolution", "averaging")
    conventions = {k: v for k, v in conventions.items() if k in general or k in chosen}
    return Report(
        name=name or Path(pred_dir).expanduser().resolve().name,
        metrics=chosen,
        per_video=per_video,
        dataset=dataset,
        conventions=conventions,
        notes=notes,
        sources={"pred": str(Path(pred_dir).expanduser()), "gt": str(Path(gt_dir).expanduser())},
    )


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _length_message(seq: str, pred_frames: int, gt_frames: int, strict: bool) -> str:
    head = f"{seq}: the prediction has {_frames(pred_frames)} but the ground truth has {gt_frames}"
    if strict:
        return head + " (frame counts must agree with strict / --strict)"
    return head + f"; only the first {min(pred_frames, gt_frames)} are scored (length mismatch)"
