"""Evaluation harness: the L-C4 test protocol, ``evaluate`` and its report, temporal plots."""

from .discover import discover_videos, read_frame_folder, resize_video
from .harness import evaluate, parse_metrics
from .plot import plot_temporal, temporal_curves
from .prompts import load_prompts
from .protocol import DAVIS30, VIDEVO20, lab_lightness_grey, prepare_ground_truth, sequence_list
from .report import ALL_METRICS, EXTRA_METRICS, PAPER_METRICS, Report

__all__ = [
    "evaluate",
    "parse_metrics",
    "Report",
    "PAPER_METRICS",
    "EXTRA_METRICS",
    "ALL_METRICS",
    "DAVIS30",
    "VIDEVO20",
    "sequence_list",
    "prepare_ground_truth",
    "lab_lightness_grey",
    "load_prompts",
    "discover_videos",
    "read_frame_folder",
    "resize_video",
    "plot_temporal",
    "temporal_curves",
]
