"""M5: permutation score — loss change when two complete blocks exchange places (protocol §2 M5, D20).

For every pair i < j the block sequence is b_0 .. b_{i−1}, b_j, b_{i+1} .. b_{j−1}, b_i, b_{j+1} .. b_{L−1}
(whole blocks: attention, FFN/MoE incl. router and experts, both norm gains). With ℓ the mean next-token
cross-entropy over the T−1 targets of each window (protocol: 511 of 512), averaged over windows:

    P(i, j) = |ℓ_ij − ℓ_0| / ℓ_0,     P_global = mean over the L(L−1)/2 pairs.

Losses are kept per window, so `ci.permutation_global` is a percentile bootstrap interval over the windows.
The prefix b_0 .. b_{i−1} is unchanged, so each swapped run restarts from the cached x_i; runs that apply the
same block at the same depth share one batched call (the loop is intervene.py's).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from .. import stats
from ..model.transformer import Transformer
from .intervene import Batch, Run, intervene
from .results import MetricResult
from .states import ce_per_window


def swapped(blocks: list, i: int, j: int) -> list:
    """The block list with entries i and j exchanged."""
    out = list(blocks)
    out[i], out[j] = out[j], out[i]
    return out


def permutation_losses(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 4,
    bf16: bool = False,
    from_cache: bool = True,
    chain_tokens: int = 4096,
    progress: bool = False,
    per_window: bool = False,
):
    """(ℓ_0, ℓ (L, L) with ℓ[i, j] the loss of swap (i, j) for i < j, NaN elsewhere).
    per_window=True returns the per-window loss sums instead: (base (N,), swapped (N, pairs), targets per window).

    Run (i, j) starts from the cached x_i with the swapped blocks i.. (`intervene`, at most `chain_tokens` tokens
    at once: at depth p every run with i < p, j ≠ p applies block p). from_cache=False recomputes every swapped
    run from the embedding, one at a time (test oracle and benchmark baseline).
    """
    L = model.cfg.n_layers
    blocks = list(model.blocks)
    pairs = [(i, j) for i in range(L) for j in range(i + 1, L)]
    N, T = windows.shape
    base = np.zeros(N)
    sums = np.zeros((N, len(pairs)))

    def on_batch(b: Batch) -> None:
        base[b.rows] = ce_per_window(model, b.xs[-1], b.idx).numpy()

    def on_done(b: Batch, c: int, x_last: torch.Tensor) -> None:
        sums[b.rows, c] += ce_per_window(model, x_last, b.idx).numpy()

    runs = [Run(i, swapped(blocks, i, j)[i:]) for i, j in pairs]
    intervene(model, windows, runs, micro_batch, bf16, chain_tokens, on_batch=on_batch, on_done=on_done,
              from_cache=from_cache, desc="permutation", progress=progress)
    if per_window:
        return base, sums, T - 1
    count = N * (T - 1)
    losses = np.full((L, L), np.nan)
    for c, (i, j) in enumerate(pairs):
        losses[i, j] = sums[:, c].sum() / count
    return base.sum() / count, losses


def compute_permutation(
    model: Transformer, windows: torch.Tensor, micro_batch: int = 4, bf16: bool = False, chain_tokens: int = 4096,
    progress: bool = False, boot_resamples: int = stats.N_BOOT, boot_seed: int = 0,
) -> MetricResult:
    """M5 on ANALYSIS_SET windows (N, T): tidy table (i, j, loss, permutation) plus ℓ_0, P_global and its window
    bootstrap interval ci.permutation_global (`boot_resamples` resamples; 0 = none)."""
    base, sums, targets = permutation_losses(model, windows, micro_batch, bf16, chain_tokens=chain_tokens,
                                             progress=progress, per_window=True)
    N = windows.shape[0]
    L = model.cfg.n_layers
    pairs = [(i, j) for i in range(L) for j in range(i + 1, L)]
    l0 = base.sum() / (N * targets)
    losses = np.full((L, L), np.nan)
    for c, (i, j) in enumerate(pairs):
        losses[i, j] = sums[:, c].sum() / (N * targets)
    rows = [{"i": i, "j": j, "loss": losses[i, j], "permutation": abs(losses[i, j] - l0) / l0}
            for i in range(L) for j in range(i + 1, L)]
    table = pd.DataFrame(rows, columns=["i", "j", "loss", "permutation"])
    scalars = {
        "permutation_global": float(table["permutation"].mean()) if len(table) else float("nan"),
        "baseline_loss": l0,
        "n_windows": int(windows.shape[0]),
        "window": int(windows.shape[1]),
    }
    if boot_resamples and pairs:
        def p_global(i: np.ndarray) -> float:
            b = base[i].sum()
            return float(np.mean(np.abs(sums[i].sum(0) - b) / b))  # the targets per window cancel

        low, high = stats.window_interval(p_global, N, boot_seed, n_resamples=boot_resamples)
        scalars["ci"] = {"permutation_global": {"low": low, "high": high}}
    return MetricResult(scalars, table)
