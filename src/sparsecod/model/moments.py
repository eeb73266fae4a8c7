"""Activation statistics shared by the training callbacks (train.stats) and the analysis (metrics.kurtosis):
M1/M2 variance, M10 kurtosis. Below both, so training never imports the analysis (issue 17.4)."""

from __future__ import annotations

import torch


def feature_variance(h: torch.Tensor) -> torch.Tensor:
    """M1/M2: variance across the d features of each token (unbiased, 1/(d-1)), averaged over tokens.

    h (..., d) -> scalar fp32. Var(h) = mean_tokens (1/(d-1)) Σ_j (h_j - mean_j h)².
    """
    return h.detach().float().var(dim=-1, unbiased=True).mean()


def per_dim_kurtosis(h: torch.Tensor) -> torch.Tensor:
    """M10: Pearson (non-excess) kurtosis of each feature over the N tokens; 3 where the variance is 0.

    h (..., d) -> (d,) fp32 with κ_j = m4_j / m2_j² (population moments over tokens).
    """
    x = h.detach().float().reshape(-1, h.shape[-1])
    c = x - x.mean(dim=0)
    m2 = c.square().mean(dim=0)
    m4 = c.square().square().mean(dim=0)
    return torch.where(m2 > 0, m4 / m2.square().clamp_min(torch.finfo(torch.float32).tiny), torch.full_like(m2, 3.0))


def layer_kurtosis(h: torch.Tensor) -> torch.Tensor:
    """M10 layer level: K = (1/d) Σ_j κ_j (scalar fp32)."""
    return per_dim_kurtosis(h).mean()
