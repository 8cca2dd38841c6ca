"""Video colourisation metrics: colourfulness, PSNR, SSIM, LPIPS, FVD, FID, CDC, CLIP score, E_warp.

Videos are ``(T, H, W, 3)`` RGB arrays or tensors, uint8 (0–255) or float in [0, 1]. Metrics
that need pretrained weights load them from local files only and raise FileNotFoundError naming
the file when it is absent. Conventions and their differences from published numbers:
``docs/evaluation.md``.
"""

from .cdc import cdc, cdc_curve, cdc_per_channel, channel_histograms, js_divergence
from .clip_score import CLIPScorer, clip_score
from .colorfulness import COLORFULNESS_VARIANTS, colorfulness, colorfulness_per_frame
from .detectors import I3D_FILE, INCEPTION_FILE
from .fid import fid, inception_features, load_inception
from .frechet import frechet_distance, gaussian_stats
from .fvd import fvd, fvd_from_features, i3d_features, load_i3d, video_clips
from .lpips import LPIPS, load_lpips, lpips, lpips_per_frame
from .psnr import psnr, psnr_per_frame
from .ssim import ssim, ssim_per_frame
from .warp import warp_error, warp_error_per_pair, warp_frame

from .free_color import commitment_scores, free_color_scores
from .instance import hue_spread, instance_color_accuracy

__all__ = [
    "cdc",
    "cdc_curve",
    "cdc_per_channel",
    "channel_histograms",
    "js_divergence",
    "colorfulness",
    "colorfulness_per_frame",
    "COLORFULNESS_VARIANTS",
    "psnr",
    "psnr_per_frame",
    "ssim",
    "ssim_per_frame",
    "LPIPS",
    "load_lpips",
    "lpips",
    "lpips_per_frame",
    "frechet_distance",
    "gaussian_stats",
    "fvd",
    "fvd_from_features",
    "i3d_features",
    "load_i3d",
    "video_clips",
    "fid",
    "inception_features",
    "load_inception",
    "I3D_FILE",
    "INCEPTION_FILE",
    "CLIPScorer",
    "clip_score",
    "warp_error",
    "warp_error_per_pair",
    "warp_frame",
    "instance_color_accuracy",
    "hue_spread",
    "free_color_scores",
    "commitment_scores",
]
