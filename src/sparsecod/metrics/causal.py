"""M4: causal score — how much skipping block s changes the updates of the later blocks (protocol §2 M4, D2, D9, Q6).

Baseline states x_0..x_L (pre-final-norm); skipping block s gives x̄_j = x_j for j ≤ s, x̄_{s+1} = x_s and
x̄_{l+1} = block_l(x̄_l) for l > s. With updates Δ_l = x_{l+1} − x_l and Δ̄_l = x̄_{l+1} − x̄_l:

    C(s, l) = mean_{n,t} ‖Δ̄_{l,n,t} − Δ_{l,n,t}‖₂ / mean_{n,t} ‖Δ_{l,n,t}‖₂     for l > s, else 0

(ratio of token-averaged L2 norms; 0 when the denominator is < 1e-8). One baseline pass per micro-batch
caches x_0..x_L; the run with block s skipped restarts from the cached x_s, not from the embedding, and the
L−1 skipped runs share batched block calls (at depth l every run applies block l): the loop is intervene.py's.
Globals: C_global = mean over the L(L−1)/2 pairs s < l (Q6); row-mean variant = mean over s = 0..L−2 of
mean_{l>s} C(s, l) (D9). Both sums are kept per window, so `ci.causal_global` is a percentile bootstrap interval
over the windows (`sparsecod.stats.window_interval`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from .. import stats
from ..model.transformer import Transformer
from .intervene import Batch, Run, intervene
from .results import MetricResult

ZERO_GUARD = 1e-8


def _token_norm_sum(delta: torch.Tensor) -> np.ndarray:
    """Σ over each window's tokens of the per-token L2 norm of delta (B, T, d) -> (B,)."""
    return delta.float().norm(dim=-1).sum(dim=-1).double().cpu().numpy()


def causal_from_sums(num: np.ndarray, den: np.ndarray, n_tokens: int) -> np.ndarray:
    """C (L, L) from the numerator sums num (L, L) and denominator sums den (L,) over n_tokens tokens."""
    small = den / n_tokens < ZERO_GUARD
    C = np.where(small[None, :], 0.0, num / np.where(small, 1.0, den)[None, :])  # (num/n) / (den/n)
    return np.triu(C, 1)


def causal_matrix(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 4,
    bf16: bool = False,
    from_cache: bool = True,
    chain_tokens: int = 4096,
    progress: bool = False,
    per_window: bool = False,
):
    """C (L, L), row s = skipped block, column l = affected block; upper triangular.
    per_window=True returns the sums instead: (num (N, L, L), den (N, L)) per window (C = causal_from_sums of
    their sums over windows, with N·T tokens).

    Run s (s = 0..L−2) skips block s: it starts from the cached x_s with blocks s+1.. at their own depths
    (`intervene`, at most `chain_tokens` tokens at once). from_cache=False recomputes every skipped run from
    the embedding, one at a time (test oracle and benchmark baseline).
    """
    L = model.cfg.n_layers
    blocks = list(model.blocks)
    N = windows.shape[0]
    num = np.zeros((N, L, L))
    den = np.zeros((N, L))

    def on_batch(b: Batch) -> None:
        for l in range(L):
            den[b.rows, l] += _token_norm_sum(b.deltas[l])

    def on_step(b: Batch, s: int, k: int, x_in: torch.Tensor, x_out: torch.Tensor) -> None:
        l = s + 1 + k  # run s skips block s; its k-th block is block s+1+k, with input x̄_l
        num[b.rows, s, l] += _token_norm_sum((x_out - x_in) - b.deltas[l])

    runs = [Run(s, blocks[s + 1 :], depth=s + 1) for s in range(L - 1)]
    intervene(model, windows, runs, micro_batch, bf16, chain_tokens, on_batch=on_batch, on_step=on_step,
              from_cache=from_cache, desc="causal", progress=progress)
    if per_window:
        return num, den
    return causal_from_sums(num.sum(0), den.sum(0), windows.numel())


def causal_summary(C: np.ndarray) -> dict[str, float]:
    """C_global (mean over pairs s < l, Q6) and the row-mean variant (D9)."""
    L = C.shape[0]
    if L < 2:
        return {"causal_global": float("nan"), "causal_rowmean": float("nan")}
    iu = np.triu_indices(L, k=1)
    rows = [C[s, s + 1 :].mean() for s in range(L - 1)]
    return {"causal_global": float(C[iu].mean()), "causal_rowmean": float(np.mean(rows))}


def compute_causal(
    model: Transformer, windows: torch.Tensor, micro_batch: int = 4, bf16: bool = False, chain_tokens: int = 4096,
    progress: bool = False, boot_resamples: int = stats.N_BOOT, boot_seed: int = 0,
) -> MetricResult:
    """M4 on ANALYSIS_SET windows (N, T): tidy table (s, l, C) over s < l plus globals, row means and the window
    bootstrap interval ci.causal_global (seed `boot_seed`, `boot_resamples` resamples; 0 = none)."""
    num, den = causal_matrix(model, windows, micro_batch, bf16, chain_tokens=chain_tokens, progress=progress,
                             per_window=True)
    N, T = windows.shape
    C = causal_from_sums(num.sum(0), den.sum(0), N * T)
    L = C.shape[0]
    table = pd.DataFrame([{"s": s, "l": l, "causal": C[s, l]} for s in range(L) for l in range(s + 1, L)],
                         columns=["s", "l", "causal"])
    scalars = {
        **causal_summary(C),
        "row_means": [float(C[s, s + 1 :].mean()) for s in range(L - 1)],
        "n_windows": int(windows.shape[0]),
        "window": int(windows.shape[1]),
    }
    if boot_resamples and L >= 2:
        def c_global(i: np.ndarray) -> float:
            return causal_summary(causal_from_sums(num[i].sum(0), den[i].sum(0), len(i) * T))["causal_global"]

        low, high = stats.window_interval(c_global, N, boot_seed, n_resamples=boot_resamples)
        scalars["ci"] = {"causal_global": {"low": low, "high": high}}
    return MetricResult(scalars, table)
