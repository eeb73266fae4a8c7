"""Per-step activation statistics of the training forward: M1/M2 variance and M10 kurtosis.

Both accumulate over the micro-batches of one optimizer step from the block traces the training
forward already keeps (`Transformer.forward(..., capture=True)`), then combine across data-parallel
ranks with one all-reduce (token-weighted), so the values do not depend on how the global batch is
split over micro-batches and devices. Everything is computed in fp32 (sums in fp64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..model.moments import feature_variance
from ..model.transformer import BlockTrace, RMSNorm

Reduce = Callable[[torch.Tensor], torch.Tensor]  # sum over data-parallel ranks


class VarianceAccumulator:
    """M1/M2 (protocol §2): Var of x_{l+1}, a_l, m_l per block, and of x_L / N_f(x_L) (protocol D3).

    Var(h) is `feature_variance` (across the d features of each token, unbiased, mean over tokens);
    a step's value is the token-weighted mean over micro-batches and ranks.
    """

    COLUMNS = ("out_var", "attn_out_var", "ffn_out_var")

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.sums = torch.zeros(n_layers, 3, dtype=torch.float64)  # moved to the activations' device
        self.final = torch.zeros(2, dtype=torch.float64)  # var_pre, var_post
        self.tokens = 0

    @torch.no_grad()
    def add(self, traces: Sequence[BlockTrace], final_norm: RMSNorm) -> None:
        """Add one micro-batch's traces (one per block, tensors (B, T, d)); no host sync."""
        if len(traces) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} block traces, got {len(traces)}")
        n = traces[0].output.shape[:-1].numel()
        rows = [
            torch.stack([feature_variance(t.output), feature_variance(t.attn_out), feature_variance(t.ffn_out)])
            for t in traces
        ]
        x_last = traces[-1].output
        final = torch.stack([feature_variance(x_last), feature_variance(final_norm(x_last.detach()))])
        self.sums = self.sums.to(x_last.device) + torch.stack(rows).double() * n
        self.final = self.final.to(x_last.device) + final.double() * n
        self.tokens += n

    def rows(self, step: int, reduce: Reduce | None = None) -> list[dict]:
        """Long-table rows (step, layer, out_var, attn_out_var, ffn_out_var, var_pre, var_post)."""
        count = torch.tensor([float(self.tokens)], dtype=torch.float64, device=self.sums.device)
        packed = torch.cat([self.sums.flatten(), self.final, count])
        if reduce is not None:
            packed = reduce(packed)
        packed = packed.cpu()
        tokens = packed[-1].item()
        means = (packed[:-1] / tokens).tolist()
        per_layer, (pre, post) = np.array(means[:-2]).reshape(self.n_layers, 3), means[-2:]
        return [
            {"step": step, "layer": l, **dict(zip(self.COLUMNS, map(float, per_layer[l]))), "var_pre": pre, "var_post": post}
            for l in range(self.n_layers)
        ]


class KurtosisAccumulator:
    """M10 (protocol §2): per-dimension Pearson kurtosis of every block output x_{l+1} over the step's tokens.

    κ_j = m4_j / m2_j² with central moments over all N tokens of the global batch (all micro-batches
    and ranks), from fp64 power sums Σh^p, p = 1..4; κ_j = 3 where m2_j = 0. Layer level K = mean_j κ_j.
    Pooling over the global batch (the protocol's "tokens of the micro-batch") keeps the value independent
    of the micro-batch size and the device count.
    """

    QUANTILES = (0.5, 0.9, 0.99)

    def __init__(self, n_layers: int, d_model: int) -> None:
        self.power = torch.zeros(n_layers, 4, d_model, dtype=torch.float64)
        self.tokens = 0

    @torch.no_grad()
    def add(self, traces: Sequence[BlockTrace]) -> None:
        n = 0
        for l, t in enumerate(traces):
            h = t.output.detach().reshape(-1, t.output.shape[-1]).double()
            n = h.shape[0]
            h2 = h * h
            self.power = self.power.to(h.device)
            self.power[l] += torch.stack([h.sum(0), h2.sum(0), (h2 * h).sum(0), (h2 * h2).sum(0)])
        self.tokens += n

    def per_dim(self, reduce: Reduce | None = None) -> torch.Tensor:
        """(L, d) κ_j per layer (fp64, CPU) from the (rank-summed) power sums."""
        count = torch.tensor([float(self.tokens)], dtype=torch.float64, device=self.power.device)
        packed = torch.cat([self.power.flatten(), count])
        if reduce is not None:
            packed = reduce(packed)
        packed = packed.cpu()
        n = packed[-1]
        s1, s2, s3, s4 = (packed[:-1].view_as(self.power) / n).unbind(1)
        mu = s1
        m2 = (s2 - mu * mu).clamp_min(0)
        m4 = s4 - 4 * mu * s3 + 6 * mu * mu * s2 - 3 * mu**4
        return torch.where(m2 > 0, m4 / m2.square().clamp_min(torch.finfo(torch.float64).tiny), torch.full_like(m2, 3.0))

    def rows(self, step: int, reduce: Reduce | None = None) -> list[dict]:
        """Rows (step, layer, kurtosis = K, kurt_p50/p90/p99/max over the d dimensions)."""
        kappa = self.per_dim(reduce)
        q = torch.quantile(kappa, torch.tensor(self.QUANTILES, dtype=kappa.dtype), dim=1)  # (3, L)
        out = []
        for l in range(kappa.shape[0]):
            row = {"step": step, "layer": l, "kurtosis": float(kappa[l].mean())}
            row.update({f"kurt_p{round(p * 100)}": float(q[i, l]) for i, p in enumerate(self.QUANTILES)})
            row["kurt_max"] = float(kappa[l].max())
            out.append(row)
        return out
