"""M5: permutation score — loss change when two complete blocks exchange places (spec §2 M5, D20).

For every pair i < j the block sequence is b_0 .. b_{i−1}, b_j, b_{i+1} .. b_{j−1}, b_i, b_{j+1} .. b_{L−1}
(whole blocks: attention, FFN/MoE incl. router and experts, both norm gains). With ℓ the mean next-token
cross-entropy over the T−1 targets of each window (spec: 511 of 512), averaged over windows:

    P(i, j) = |ℓ_ij − ℓ_0| / ℓ_0,     P_global = mean over the L(L−1)/2 pairs.

The prefix b_0 .. b_{i−1} is unchanged, so each swapped run restarts from the cached x_i; runs that apply the
same block at the same depth share one batched call (`states.run_chains`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..model.transformer import Transformer
from .results import MetricResult
from .states import Chain, autocast, ce_sum, micro_batches, model_device, residual_states, run_chains


def swapped(blocks: list, i: int, j: int) -> list:
    """The block list with entries i and j exchanged."""
    out = list(blocks)
    out[i], out[j] = out[j], out[i]
    return out


@torch.no_grad()
def permutation_losses(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 4,
    bf16: bool = False,
    from_cache: bool = True,
    chain_tokens: int = 4096,
    progress: bool = False,
) -> tuple[float, np.ndarray]:
    """(ℓ_0, ℓ (L, L) with ℓ[i, j] the loss of swap (i, j) for i < j, NaN elsewhere).

    Swapped runs start from the cached x_i and are evaluated together (`states.run_chains`, at most
    `chain_tokens` tokens at once: at depth p every run with i < p, j ≠ p applies block p). from_cache=False
    recomputes every swapped run from the embedding, one at a time (test oracle and benchmark baseline).
    """
    device = model_device(model)
    L = model.cfg.n_layers
    blocks = list(model.blocks)
    pairs = [(i, j) for i in range(L) for j in range(i + 1, L)]
    base, count = 0.0, 0
    sums = np.zeros((L, L))
    with autocast(device, bf16):
        for idx in tqdm(list(micro_batches(windows, micro_batch)), desc="permutation", disable=not progress):
            idx = idx.to(device)
            ctx = model.context(idx.shape[1], device)

            def on_done(c: int, x_last: torch.Tensor) -> None:
                sums[pairs[c]] += ce_sum(model, x_last, idx)[0]

            if from_cache:
                xs = residual_states(model, model.embed(idx), blocks, ctx)
                s, n = ce_sum(model, xs[-1], idx)
                chains = [Chain(xs[i], swapped(blocks, i, j)[i:], offset=i) for i, j in pairs]
                run_chains(model, chains, ctx, chain_tokens, on_done=on_done)
            else:
                s, n = ce_sum(model, model.run_blocks(model.embed(idx), blocks, ctx), idx)
                for c, (i, j) in enumerate(pairs):
                    on_done(c, model.run_blocks(model.embed(idx), swapped(blocks, i, j), ctx))
            base, count = base + s, count + n
    losses = np.full((L, L), np.nan)
    for i, j in pairs:
        losses[i, j] = sums[i, j] / count
    return base / count, losses


def compute_permutation(
    model: Transformer, windows: torch.Tensor, micro_batch: int = 4, bf16: bool = False, chain_tokens: int = 4096,
    progress: bool = False,
) -> MetricResult:
    """M5 on ANALYSIS_SET windows (N, T): tidy table (i, j, loss, permutation) plus ℓ_0 and P_global."""
    l0, losses = permutation_losses(model, windows, micro_batch, bf16, chain_tokens=chain_tokens, progress=progress)
    L = losses.shape[0]
    rows = [{"i": i, "j": j, "loss": losses[i, j], "permutation": abs(losses[i, j] - l0) / l0}
            for i in range(L) for j in range(i + 1, L)]
    table = pd.DataFrame(rows, columns=["i", "j", "loss", "permutation"])
    scalars = {
        "permutation_global": float(table["permutation"].mean()) if len(table) else float("nan"),
        "baseline_loss": l0,
        "n_windows": int(windows.shape[0]),
        "window": int(windows.shape[1]),
    }
    return MetricResult(scalars, table)
