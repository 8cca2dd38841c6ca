"""The Fréchet distance between two Gaussians, the core of FID and FVD.

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})

The trace of the matrix square root is computed as Σ √λᵢ over the eigenvalues of the symmetric
PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2} (which has the same spectrum as Σ₁Σ₂). This stays real and
finite for the rank-deficient covariances that few samples produce, where ``scipy.linalg.sqrtm``
returns complex noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["gaussian_stats", "frechet_distance"]


def gaussian_stats(features: Any, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``(N, D)`` features in float64.

    ``ddof=0`` (population covariance) follows the StyleGAN2-ADA / StyleGAN-V metric code whose
    detectors lpips uses; pytorch-fid and TTUR use ``ddof=1``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D); got {x.shape}")
    if x.shape[0] < ddof + 1 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors to estimate a covariance; got {x.shape[0]}")
    mu = x.mean(axis=0)
    c = x - mu
    sigma = c.T @ c / (x.shape[0] - ddof)
    return mu, sigma


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Squared Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (the FID/FVD number)."""
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"means must be (D,) and covariances (D, D) with one D; got {m1.shape}, {s1.shape}, {m2.shape}, {s2.shape}"
        )
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    return float(max(value, 0.0))
