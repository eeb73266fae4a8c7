"""M10 (and M1/M2) on held-out data: kurtosis and variance of block outputs of the final model (protocol §2 M10, D4).

Per micro-batch of ANALYSIS_SET windows, the per-dimension Pearson kurtosis over its N = B·T tokens,
averaged over the d features (`moments.layer_kurtosis`, the definition the training logger uses on training
micro-batches), for the block output x_{l+1}, the attention output a_l and the FFN/MoE output m_l;
values are averaged over micro-batches. The same pass gives the feature variance (`moments.feature_variance`,
M1/M2), including the post-final-norm variance of x_L (D3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..model.transformer import Transformer
from ..model.moments import feature_variance, layer_kurtosis
from .results import MetricResult
from .states import autocast, micro_batches, model_device

_TENSORS = {"out": "output", "attn_out": "attn_out", "ffn_out": "ffn_out"}


@torch.no_grad()
def compute_kurtosis(
    model: Transformer, windows: torch.Tensor, micro_batch: int = 4, bf16: bool = False, progress: bool = False
) -> MetricResult:
    """Table (layer, out_kurtosis, attn_out_kurtosis, ffn_out_kurtosis, out_var, attn_out_var, ffn_out_var)."""
    device = model_device(model)
    L = model.cfg.n_layers
    sums = {f"{n}_{s}": np.zeros(L) for n in _TENSORS for s in ("kurtosis", "var")}
    post_var, n_mb = 0.0, 0
    for idx in tqdm(list(micro_batches(windows, micro_batch)), desc="kurtosis", disable=not progress):
        idx = idx.to(device)
        with autocast(device, bf16):
            ctx = model.context(idx.shape[1], device, capture=True)
            x_last = model.run_blocks(model.embed(idx), model.blocks, ctx)
            post_var += float(feature_variance(model.final_norm(x_last)))
        for layer, trace in enumerate(ctx.traces):
            for name, attr in _TENSORS.items():
                h = getattr(trace, attr)  # None for a block without sub-layers (e.g. an AffineBlock)
                sums[f"{name}_kurtosis"][layer] += float(layer_kurtosis(h)) if h is not None else np.nan
                sums[f"{name}_var"][layer] += float(feature_variance(h)) if h is not None else np.nan
        n_mb += 1
    table = pd.DataFrame({"layer": np.arange(L), **{k: v / n_mb for k, v in sums.items()}})
    scalars = {
        "kurtosis_mean": float(table["out_kurtosis"].mean()),
        "kurtosis_last": float(table["out_kurtosis"].iloc[-1]),
        "out_kurtosis": table["out_kurtosis"].tolist(),
        "var_pre": float(table["out_var"].iloc[-1]),
        "var_post": post_var / n_mb,
        "n_windows": int(windows.shape[0]),
        "window": int(windows.shape[1]),
    }
    return MetricResult(scalars, table)
