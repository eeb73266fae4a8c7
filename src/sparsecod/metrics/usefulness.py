"""M6: usefulness score — can a block be replaced by a token-wise affine map? (spec §2 M6, D1, D13).

For each block l: X = x_l and Y = x_{l+1} at every token position of the windows (N·T rows, position 0
included); ordinary least squares with intercept, no regularization, solved in float64 from centred
normal equations (shifted sums, so the intercept costs no conditioning); a ridge of
1e-8·tr(S_xx)/d (S_xx the centred Gram matrix) is added only when S_xx is singular. Block l is replaced
by `AffineBlock(W, b)`: x ↦ x W + b (no attention, no token mixing), every other block unchanged, and
the loss ℓ_l^lin is evaluated in-sample on the same windows (restarting from the cached x_l).

    r_l = ℓ_l^lin / ℓ_0,  useful iff r_l > 1 + τ (τ = 0.1),  U = (1/L) Σ_l 1[r_l > 1 + τ],
    E = Σ_l 1[r_l > 1 + τ] effective layers,  W = L − E wasted layers.

D1: the released code installed W as a linear layer's weight, i.e. computed x Wᵀ + b; `transpose_bug=True`
reproduces it. Memory: 2·L·d² float64 accumulators (about 2 GB at L = 32, d = 2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..model.transformer import AffineBlock, Transformer
from .results import MetricResult
from .states import Chain, autocast, ce_sum, micro_batches, model_device, residual_states, run_chains

RIDGE = 1e-8


@dataclass
class AffineFit:
    """x ↦ x W + b with W (d_in, d_out), b (d_out,) float64; ridge: whether the singular-case ridge was needed."""

    weight: torch.Tensor
    bias: torch.Tensor
    ridge: bool

    def block(self, transpose_bug: bool = False, dtype: torch.dtype = torch.float32) -> AffineBlock:
        W = self.weight.T if transpose_bug else self.weight
        return AffineBlock(W.to(dtype).contiguous(), self.bias.to(dtype))


def solve_affine(Sxx: torch.Tensor, Sxy: torch.Tensor, mean_x: torch.Tensor, mean_y: torch.Tensor) -> AffineFit:
    """W = S_xx⁻¹ S_xy (Cholesky, float64; ridge only if singular), b = ȳ − x̄ W."""
    Sxx, Sxy = Sxx.double(), Sxy.double()
    L, info = torch.linalg.cholesky_ex(Sxx)
    ridge = bool(info != 0)
    if ridge:
        d = Sxx.shape[0]
        lam = RIDGE * float(Sxx.diagonal().sum()) / d
        eye = torch.eye(d, dtype=Sxx.dtype, device=Sxx.device)
        L, info = torch.linalg.cholesky_ex(Sxx + max(lam, torch.finfo(torch.float64).tiny) * eye)
        if info != 0:  # degenerate beyond a ridge (e.g. all-constant features): minimum-norm solution
            W = torch.linalg.lstsq(Sxx.cpu(), Sxy.cpu(), driver="gelsd").solution.to(Sxx.device)
            return AffineFit(W, mean_y - mean_x @ W, True)
    W = torch.cholesky_solve(Sxy, L)
    return AffineFit(W, mean_y - mean_x @ W, ridge)


class _ShiftedMoments:
    """Running Σ(x−K), Σ(x−K)ᵀ(x−K), Σ(x−K)ᵀ(y−K_y) in float64; shifts K from the first batch (stability)."""

    def __init__(self) -> None:
        self.n = 0
        self.shift_x = self.shift_y = self.sx = self.sy = self.gxx = self.gxy = None

    def add(self, X: torch.Tensor, Y: torch.Tensor) -> None:
        X, Y = X.double(), Y.double()
        if self.n == 0:
            self.shift_x, self.shift_y = X.mean(0), Y.mean(0)
            d_in, d_out = X.shape[1], Y.shape[1]
            self.sx = X.new_zeros(d_in)
            self.sy = X.new_zeros(d_out)
            self.gxx = X.new_zeros(d_in, d_in)
            self.gxy = X.new_zeros(d_in, d_out)
        Xc, Yc = X - self.shift_x, Y - self.shift_y
        self.n += X.shape[0]
        self.sx += Xc.sum(0)
        self.sy += Yc.sum(0)
        self.gxx += Xc.T @ Xc
        self.gxy += Xc.T @ Yc

    def fit(self) -> AffineFit:
        mx, my = self.sx / self.n, self.sy / self.n
        Sxx = self.gxx - self.n * torch.outer(mx, mx)
        Sxy = self.gxy - self.n * torch.outer(mx, my)
        return solve_affine(Sxx, Sxy, self.shift_x + mx, self.shift_y + my)


@torch.no_grad()
def fit_block_maps(
    model: Transformer, windows: torch.Tensor, micro_batch: int = 2, bf16: bool = False, progress: bool = False
) -> list[AffineFit]:
    """One OLS affine map x_l -> x_{l+1} per block over all token positions of windows (N, T)."""
    device = model_device(model)
    blocks = list(model.blocks)
    moments = [_ShiftedMoments() for _ in blocks]
    for idx in tqdm(list(micro_batches(windows, micro_batch)), desc="usefulness fit", disable=not progress):
        idx = idx.to(device)
        with autocast(device, bf16):
            xs = residual_states(model, model.embed(idx), blocks, model.context(idx.shape[1], device))
        for layer, m in enumerate(moments):
            m.add(xs[layer].reshape(-1, xs[layer].shape[-1]), xs[layer + 1].reshape(-1, xs[layer + 1].shape[-1]))
    return [m.fit() for m in moments]


@torch.no_grad()
def replacement_losses(
    model: Transformer,
    windows: torch.Tensor,
    fits: list[AffineFit],
    variants: tuple[bool, ...] = (False,),
    micro_batch: int = 2,
    bf16: bool = False,
    chain_tokens: int = 4096,
    progress: bool = False,
) -> tuple[float, dict[bool, np.ndarray]]:
    """(ℓ_0, {transpose_bug: ℓ^lin (L,)}) on windows (in-sample).

    Each replaced run restarts from the cached x_l; runs share batched calls of the blocks after their
    replacement (`states.run_chains`, at most `chain_tokens` tokens at once).
    """
    device = model_device(model)
    blocks = list(model.blocks)
    L = len(blocks)
    dtype = next(model.parameters()).dtype
    replacements = {v: [f.block(v, dtype).to(device) for f in fits] for v in variants}
    runs = [(v, layer) for v in variants for layer in range(L)]
    base, count = 0.0, 0
    sums = {v: np.zeros(L) for v in variants}
    with autocast(device, bf16):
        for idx in tqdm(list(micro_batches(windows, micro_batch)), desc="usefulness loss", disable=not progress):
            idx = idx.to(device)
            ctx = model.context(idx.shape[1], device)
            xs = residual_states(model, model.embed(idx), blocks, ctx)
            s, n = ce_sum(model, xs[-1], idx)
            base, count = base + s, count + n

            def on_done(c: int, x_last: torch.Tensor) -> None:
                v, layer = runs[c]
                sums[v][layer] += ce_sum(model, x_last, idx)[0]

            chains = [Chain(xs[layer], [replacements[v][layer], *blocks[layer + 1 :]], offset=layer)
                      for v, layer in runs]
            run_chains(model, chains, ctx, chain_tokens, on_done=on_done)
    return base / count, {v: sums[v] / count for v in variants}


def usefulness_summary(l0: float, lin: np.ndarray, tau: float = 0.1) -> dict[str, float]:
    """U, effective/wasted layer counts, mean loss increase and mean ratio (spec M6)."""
    ratio = lin / l0
    useful = ratio > 1 + tau
    return {
        "usefulness": float(useful.mean()),
        "effective_layers": int(useful.sum()),
        "wasted_layers": int(len(lin) - useful.sum()),
        "mean_loss_increase": float((lin - l0).mean()),
        "mean_ratio": float(ratio.mean()),
    }


def compute_usefulness(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 2,
    bf16: bool = False,
    tau: float = 0.1,
    transpose_bug: bool = True,
    chain_tokens: int = 4096,
    progress: bool = False,
) -> MetricResult:
    """M6 on ANALYSIS_SET windows (N, T). Primary fields use x W + b; with transpose_bug also the D1 variant
    (fields suffixed `_transpose_bug`, table rows with variant = "transpose_bug")."""
    fits = fit_block_maps(model, windows, micro_batch, bf16, progress)
    variants = (False, True) if transpose_bug else (False,)
    l0, lin = replacement_losses(model, windows, fits, variants, micro_batch, bf16, chain_tokens, progress)
    rows = []
    scalars: dict = {"baseline_loss": l0, "tau": tau, "n_windows": int(windows.shape[0]),
                     "window": int(windows.shape[1]), "ridge_layers": [i for i, f in enumerate(fits) if f.ridge]}
    for v in variants:
        name = "transpose_bug" if v else "correct"
        suffix = "_transpose_bug" if v else ""
        summary = usefulness_summary(l0, lin[v], tau)
        scalars.update({k + suffix: val for k, val in summary.items()})
        scalars["ratio" + suffix] = (lin[v] / l0).tolist()
        for layer, loss in enumerate(lin[v]):
            rows.append({"variant": name, "layer": layer, "loss_lin": loss, "loss_increase": loss - l0,
                         "ratio": loss / l0, "useful": bool(loss / l0 > 1 + tau), "ridge": fits[layer].ridge})
    return MetricResult(scalars, pd.DataFrame(rows))
