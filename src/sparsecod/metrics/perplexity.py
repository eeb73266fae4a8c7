"""M11: held-out perplexity PPL = exp(Σ CE / #targets) (protocol §2 M11, Q5).

Primary: PPL_SET (a fixed prefix of the held-out stream, identical for every run) cut into windows of the
model's training length T, T−1 targets per window. Secondary: the loss/PPL on the 512-token ANALYSIS_SET
windows, the baseline ℓ_0 that M4-M6 compute.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..model.transformer import Transformer
from .results import MetricResult
from .states import autocast, ce_sum, micro_batches, model_device


@torch.no_grad()
def mean_loss(
    model: Transformer, windows: torch.Tensor, micro_batch: int, bf16: bool = False, progress: bool = False,
    desc: str = "loss",
) -> tuple[float, int]:
    """(mean next-token CE over all targets of windows (N, T), #targets)."""
    device = model_device(model)
    total, count = 0.0, 0
    with autocast(device, bf16):
        for idx in tqdm(list(micro_batches(windows, micro_batch)), desc=desc, disable=not progress):
            idx = idx.to(device)
            x_last = model.run_blocks(model.embed(idx), model.blocks, model.context(idx.shape[1], device))
            s, n = ce_sum(model, x_last, idx)
            total, count = total + s, count + n
    return total / count, count


def compute_perplexity(
    model: Transformer,
    ppl_windows: torch.Tensor,
    analysis_windows: torch.Tensor | None = None,
    batch_tokens: int = 16_384,
    micro_batch: int = 4,
    bf16: bool = False,
    progress: bool = False,
) -> MetricResult:
    """M11 on PPL_SET windows (N, T) plus, if given, the analysis-set loss/PPL."""
    T = ppl_windows.shape[1]
    loss, n = mean_loss(model, ppl_windows, max(1, batch_tokens // T), bf16, progress, desc="perplexity")
    scalars = {"loss": loss, "ppl": math.exp(loss), "seq_len": T, "n_windows": int(ppl_windows.shape[0]),
               "n_targets": n}
    if analysis_windows is not None:
        a_loss, a_n = mean_loss(model, analysis_windows, micro_batch, bf16, progress, desc="analysis loss")
        scalars.update({"analysis_loss": a_loss, "analysis_ppl": math.exp(a_loss),
                        "analysis_window": int(analysis_windows.shape[1]), "analysis_targets": a_n})
    return MetricResult(scalars)
