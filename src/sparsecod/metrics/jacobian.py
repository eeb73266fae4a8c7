"""M3 / M3b: averaged block Jacobian J̄_l and its deviation from identity (protocol §2 M3, M3b, D2, D5, Q12, Q13).

For block l with input x = x_l and output y = x_{l+1} (the last block's output is the pre-norm x_L, D2):

    J̄_l[a, b] = (1/(N·T)) Σ_n Σ_t Σ_t' ∂y_{n,t',a} / ∂x_{n,t,b}      (row = output feature a)

Row a is one vector-Jacobian product with the cotangent "one-hot a at every output position", summed
over (sequence, input position). The d VJPs of a micro-batch share one forward (`torch.func.vjp`) and
are evaluated `chunk` at a time with `torch.func.vmap` over basis vectors. The residual path adds
exactly I; causal attention adds the cross-position terms t' ≥ t.

Per layer: D_l = ‖J̄_l − I‖_F / d (the published "Frobenius deviation", D5), off-diagonal RMS, mean and
unbiased std of diag(J̄_l), ‖J̄_l‖_F, spectral norm σ_max(J̄_l). Globals: mean D_l, mean off-diagonal
RMS, mean diagonal, identity preservation = fraction of layers with diagonal mean > 0.5.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..model.transformer import ForwardContext, Transformer
from .results import MetricResult
from .states import autocast, frozen, micro_batches, model_device, residual_states

HEATMAP_LAYERS = (1, 8, 16, 24, 30)  # Fig 12 for L = 32 (M3b CHOICE)


def heatmap_layers(n_layers: int) -> list[int]:
    """Layers whose J̄ is saved: L−2 (Fig 3) and 1, 8, 16, 24, 30 (Fig 12), clamped to 0..L−1."""
    wanted = {n_layers - 2, *HEATMAP_LAYERS}
    return sorted({min(max(layer, 0), n_layers - 1) for layer in wanted})


def block_jacobian_sum(
    block: nn.Module,
    x: torch.Tensor,
    make_ctx: Callable[[], ForwardContext],
    chunk: int = 64,
    method: str = "vmap",
) -> torch.Tensor:
    """Σ_{n,t} of the all-output-positions VJP rows of `block` at x (B, T, d) -> (d, d) fp64, row = output feature.

    method "vmap": one forward, then vmapped VJPs over `chunk` basis vectors at a time (the metric);
    "loop": one backward pass per output feature (reference and benchmark baseline).
    Divide by B·T for this micro-batch's J̄.
    """
    d = x.shape[-1]
    out = torch.empty(d, d, dtype=torch.float64, device=x.device)
    if method == "loop":
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            y = block(xg, make_ctx())
            for a in range(d):
                cot = torch.zeros_like(y)
                cot[..., a] = 1
                (g,) = torch.autograd.grad(y, xg, cot, retain_graph=a < d - 1)
                out[a] = g.sum(dim=(0, 1)).double()
        return out
    if method != "vmap":
        raise ValueError(f"unknown Jacobian method {method!r}; use 'vmap' or 'loop'")
    y, vjp_fn = torch.func.vjp(lambda inp: block(inp, make_ctx()), x)
    eye = torch.eye(d, dtype=y.dtype, device=y.device)
    with warnings.catch_warnings():
        # Ops without a batching rule (fused SDPA / grouped_mm backward) fall back to a per-vector loop: slower, exact.
        warnings.filterwarnings("ignore", message=".*performance drop.*batching rule.*")
        for a0 in range(0, d, chunk):
            basis = eye[a0 : a0 + chunk]
            cot = basis[:, None, None, :].expand(basis.shape[0], *y.shape)
            (g,) = torch.func.vmap(vjp_fn)(cot)
            out[a0 : a0 + basis.shape[0]] = g.sum(dim=(1, 2)).double()
    return out


def jacobian_stats(J: torch.Tensor) -> dict[str, float]:
    """Per-layer statistics of one averaged Jacobian J (d, d) (protocol M3)."""
    J = J.double()
    d = J.shape[0]
    eye = torch.eye(d, dtype=J.dtype, device=J.device)
    diag = J.diagonal()
    off = J * (1 - eye)
    return {
        "deviation": float(torch.linalg.matrix_norm(J - eye) / d),
        "offdiag_rms": float(torch.linalg.matrix_norm(off) / np.sqrt(max(d * d - d, 1))),
        "diag_mean": float(diag.mean()),
        "diag_std": float(diag.std(unbiased=True)) if d > 1 else 0.0,
        "fro": float(torch.linalg.matrix_norm(J)),
        "spectral_norm": float(torch.linalg.matrix_norm(J, ord=2)),
    }


def averaged_jacobians(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 2,
    chunk: int = 64,
    bf16: bool = False,
    method: str = "vmap",
    explicit_attention: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """J̄_l of every block over windows (N, T) -> (L, d, d) fp64.

    explicit_attention: run attention through the explicit softmax (fully vmappable, memory O(chunk·B·H·T²))
    instead of fused SDPA (whose backward is looped per basis vector under vmap).
    """
    device = model_device(model)
    N, T = windows.shape
    sums = torch.zeros(model.cfg.n_layers, model.cfg.d_model, model.cfg.d_model, dtype=torch.float64, device=device)
    n_mb = -(-N // micro_batch)
    bar = tqdm(total=n_mb * model.cfg.n_layers, desc="jacobian", disable=not progress)
    with frozen(model), autocast(device, bf16):

        def make_ctx() -> ForwardContext:
            return model.context(T, device, attn_probs=explicit_attention)

        for idx in micro_batches(windows, micro_batch):
            idx = idx.to(device)
            with torch.no_grad():
                xs = residual_states(model, model.embed(idx), model.blocks, make_ctx())
            for layer, block in enumerate(model.blocks):
                sums[layer] += block_jacobian_sum(block, xs[layer], make_ctx, chunk, method)
                bar.update()
    bar.close()
    return sums / (N * T)


def compute_jacobian(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 2,
    chunk: int = 64,
    bf16: bool = False,
    matrix_layers: Sequence[int] | None = None,
    explicit_attention: bool = False,
    progress: bool = False,
) -> MetricResult:
    """M3 on windows (N, T) (protocol: the first 50 of ANALYSIS_SET): per-layer table, globals, J̄ of heatmap layers."""
    L = model.cfg.n_layers
    J = averaged_jacobians(model, windows, micro_batch, chunk, bf16, "vmap", explicit_attention, progress)
    rows = [{"layer": layer, **jacobian_stats(J[layer])} for layer in range(L)]
    table = pd.DataFrame(rows)
    layers = heatmap_layers(L) if matrix_layers is None else sorted({int(x) for x in matrix_layers})
    bad = [x for x in layers if not 0 <= x < L]
    if bad:
        raise ValueError(f"analysis.jacobian_layers {bad} outside 0..{L - 1}")
    scalars = {
        "deviation_mean": float(table["deviation"].mean()),
        "offdiag_rms_mean": float(table["offdiag_rms"].mean()),
        "diag_mean": float(table["diag_mean"].mean()),
        "identity_preservation": float((table["diag_mean"] > 0.5).mean()),
        "deviation": table["deviation"].tolist(),
        "n_windows": int(windows.shape[0]),
        "window": int(windows.shape[1]),
        "matrix_layers": layers,
    }
    arrays = {f"layer{layer:02d}": J[layer].float().cpu().numpy() for layer in layers}
    return MetricResult(scalars, table, arrays)
