"""M7: weight sparsity S_ε(θ) = (1/|θ|) Σ_i 1[|θ_i| < ε] of the final fp32 weights (protocol §2 M7, Q2, D8).

Parameter sets: all trainable parameters (primary) and the subsets block_matrices (QKV, attention output,
gate/up/down; router, experts and shared expert for MoE), lm_head, embedding, norm_gains (all RMSNorm
gains incl. the final norm), decayed / non_decayed (the optimizer's weight-decay groups, protocol §1.5).
Padded vocabulary rows of the embedding and the LM head are parameters and are counted.
Thresholds: ε ∈ {1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6} (default panels 1e-2, 1e-3, 1e-4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch

from ..model.decay import decay_split
from ..model.transformer import RMSNorm, Transformer
from .results import MetricResult
from .settings import WEIGHT_EPS


def eps_key(eps: float) -> str:
    """Stable JSON key of a threshold: 0.01 -> '0.01', 1e-05 -> '1e-05'."""
    return f"{eps:g}"


def below_counts(tensors: Iterable[torch.Tensor], eps: Sequence[float]) -> tuple[list[int], int]:
    """(#entries with |θ| < ε for each ε, total #entries) over `tensors`, in one bucketize pass per tensor."""
    edges = torch.tensor(sorted(eps), dtype=torch.float64)
    hist = torch.zeros(len(eps) + 1, dtype=torch.int64)
    total = 0
    for t in tensors:
        a = t.detach().abs().flatten()
        # bucket k holds edges[k-1] <= |θ| < edges[k] (right=True: |θ| == ε is not below ε); compared in θ's dtype
        buckets = torch.bucketize(a, edges.to(a.device, a.dtype), right=True)
        hist += torch.bincount(buckets, minlength=len(eps) + 1).cpu()
        total += a.numel()
    cumulative = hist.cumsum(0)
    by_sorted = {e: int(cumulative[k]) for k, e in enumerate(sorted(eps))}
    return [by_sorted[e] for e in eps], total


def parameter_subsets(model: Transformer) -> dict[str, list[str]]:
    """Names of the parameters of each subset of M7."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    norm_ids = {id(p) for m in model.modules() if isinstance(m, RMSNorm) for p in m.parameters(recurse=False)}
    params = dict(model.named_parameters())
    decayed, non_decayed = ([name for name, _ in group] for group in decay_split(model))
    return {
        "all": names,
        "block_matrices": [n for n in names if n.startswith("blocks.") and params[n].ndim >= 2],
        "lm_head": [n for n in names if n.startswith("lm_head.")],
        "embedding": [n for n in names if n.startswith("wte.")],
        "norm_gains": [n for n in names if id(params[n]) in norm_ids],
        "decayed": list(decayed),
        "non_decayed": list(non_decayed),
    }


@torch.no_grad()
def compute_weight_sparsity(model: Transformer, eps: Sequence[float] = WEIGHT_EPS) -> MetricResult:
    """M7 for every subset and threshold: table (subset, eps, sparsity, n_params); JSON sparsity[subset][eps]."""
    params = dict(model.named_parameters())
    rows, sparsity, sizes = [], {}, {}
    for subset, names in parameter_subsets(model).items():
        counts, total = below_counts((params[n] for n in names), eps)
        sizes[subset] = total
        sparsity[subset] = {eps_key(e): (c / total if total else float("nan")) for e, c in zip(eps, counts)}
        rows += [{"subset": subset, "eps": e, "sparsity": sparsity[subset][eps_key(e)], "n_params": total}
                 for e in eps]
    scalars = {"eps": list(eps), "sparsity": sparsity, "n_params": sizes}
    return MetricResult(scalars, pd.DataFrame(rows))
