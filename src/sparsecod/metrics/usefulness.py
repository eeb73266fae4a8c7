"""M6: usefulness score — can a block be replaced by a token-wise affine map? (protocol §2 M6, D1, D13).

For each block l: X = x_l and Y = x_{l+1} at every token position of the windows (N·T rows, position 0
included); ordinary least squares with intercept, no regularization, solved in float64 from centred
normal equations (shifted sums, so the intercept costs no conditioning); a ridge of
1e-8·tr(S_xx)/d (S_xx the centred Gram matrix) is added only when S_xx is singular. Block l is replaced
by `AffineBlock(W, b)`: x ↦ x W + b (no attention, no token mixing), every other block unchanged, and
the loss ℓ_l^lin is evaluated in-sample on the same windows (restarting from the cached x_l).

    r_l = ℓ_l^lin / ℓ_0,  useful iff r_l > 1 + τ (τ = 0.1),  U = (1/L) Σ_l 1[r_l > 1 + τ],
    E = Σ_l 1[r_l > 1 + τ] effective layers,  W = L − E wasted layers.

D1/D2a: the released code installed W as a linear layer's weight, i.e. computed x Wᵀ + b, and for the last block of
a dense model it fitted the target N_f(x_L) (the final-normed state) instead of x_L; `transpose_bug=True` reproduces
both (fields `*_transpose_bug`; MoE models are not affected by D2a, protocol D2).

Continuous scores beside τ (the τ test says nothing when no block can pass it, e.g. at small scale):
    c_l = ℓ(x_{l+1} replaced by its mean vector over all tokens) / ℓ_0    ceiling of block l (information gone)
    s_l = (r_l − 1) / (c_l − 1)                                             normalised score (0 = affine is enough)
`normalised_score` = mean_l s_l; `floor` = true when every ceiling is ≤ 1 + τ (no block can pass τ: U = 0 by
construction, a floor, not a finding). Losses are kept per window, so `ci.<score>` is a percentile bootstrap
interval over the windows with the fitted maps held fixed.
Memory: 2·L·d² float64 accumulators (about 2 GB at L = 32, d = 2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import stats
from ..model.transformer import AffineBlock, Transformer
from .intervene import Batch, Run, intervene
from .results import MetricResult
from .states import autocast, ce_per_window, micro_batches, model_device, residual_states

RIDGE = 1e-8


@dataclass
class AffineFit:
    """x ↦ x W + b with W (d_in, d_out), b (d_out,) float64; ridge: whether the singular-case ridge was needed;
    mean_out: the mean target ȳ (d_out,) (the ceiling's replacement state)."""

    weight: torch.Tensor
    bias: torch.Tensor
    ridge: bool
    mean_out: torch.Tensor | None = None

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
            return AffineFit(W, mean_y - mean_x @ W, True, mean_y)
    W = torch.cholesky_solve(Sxy, L)
    return AffineFit(W, mean_y - mean_x @ W, ridge, mean_y)


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
    model: Transformer, windows: torch.Tensor, micro_batch: int = 2, bf16: bool = False, progress: bool = False,
    normed_last: bool = False,
) -> list[AffineFit]:
    """One OLS affine map x_l -> x_{l+1} per block over all token positions of windows (N, T); with
    normed_last, one more (appended) for the last block with the released code's target N_f(x_L) (D2a)."""
    device = model_device(model)
    blocks = list(model.blocks)
    moments = [_ShiftedMoments() for _ in range(len(blocks) + normed_last)]
    for idx in tqdm(list(micro_batches(windows, micro_batch)), desc="usefulness fit", disable=not progress):
        idx = idx.to(device)
        with autocast(device, bf16):
            xs = residual_states(model, model.embed(idx), blocks, model.context(idx.shape[1], device))
            if normed_last:
                xs.append(model.final_norm(xs[-1]))
        d = xs[0].shape[-1]
        for layer, m in enumerate(moments[: len(blocks)]):
            m.add(xs[layer].reshape(-1, d), xs[layer + 1].reshape(-1, d))
        if normed_last:
            moments[-1].add(xs[-3].reshape(-1, d), xs[-1].reshape(-1, d))
    return [m.fit() for m in moments]


@torch.no_grad()
def replacement_losses(
    model: Transformer,
    windows: torch.Tensor,
    fits: list[AffineFit],
    variants: tuple = (False,),
    micro_batch: int = 2,
    bf16: bool = False,
    chain_tokens: int = 4096,
    progress: bool = False,
    per_window: bool = False,
    released_fits: list[AffineFit] | None = None,
) -> tuple:
    """(ℓ_0, {variant: ℓ^lin (L,)}) on windows (in-sample); variants: False (x W + b), True (x Wᵀ + b, with
    `released_fits` in place of `fits` when given: the D2a last-block target) and "ceiling" (x_{l+1} replaced
    by the fit's mean target ȳ_l). per_window=True returns per-window loss sums instead: (ℓ_0 sums (N,),
    {variant: (N, L)}, targets per window).

    Each replaced run restarts from the cached x_l; runs share batched calls of the blocks after their
    replacement (`intervene`, at most `chain_tokens` tokens at once).
    """
    device = model_device(model)
    blocks = list(model.blocks)
    L = len(blocks)
    dtype = next(model.parameters()).dtype
    replacements = {v: [f.block(v, dtype).to(device) for f in (released_fits if v is True and released_fits else fits)]
                    for v in variants if v != "ceiling"}
    means = [f.mean_out.to(device, dtype) for f in fits] if "ceiling" in variants else []
    keys = [(v, layer) for v in variants for layer in range(L)]
    N, T = windows.shape
    base = np.zeros(N)
    sums = {v: np.zeros((N, L)) for v in variants}

    def on_batch(b: Batch) -> None:
        base[b.rows] = ce_per_window(model, b.xs[-1], b.idx).numpy()

    def on_done(b: Batch, c: int, x_last: torch.Tensor) -> None:
        v, layer = keys[c]
        sums[v][b.rows, layer] += ce_per_window(model, x_last, b.idx).numpy()

    runs = [Run(layer + 1, blocks[layer + 1 :], x=means[layer]) if v == "ceiling" else
            Run(layer, [replacements[v][layer], *blocks[layer + 1 :]]) for v, layer in keys]
    intervene(model, windows, runs, micro_batch, bf16, chain_tokens, on_batch=on_batch, on_done=on_done,
              desc="usefulness loss", progress=progress)
    if per_window:
        return base, sums, T - 1
    return base.sum() / (N * (T - 1)), {v: sums[v].sum(0) / (N * (T - 1)) for v in variants}


def usefulness_summary(l0: float, lin: np.ndarray, tau: float = 0.1) -> dict[str, float]:
    """U, effective/wasted layer counts, mean loss increase and mean ratio (protocol M6)."""
    ratio = lin / l0
    useful = ratio > 1 + tau
    return {
        "usefulness": float(useful.mean()),
        "effective_layers": int(useful.sum()),
        "wasted_layers": int(len(lin) - useful.sum()),
        "mean_loss_increase": float((lin - l0).mean()),
        "mean_ratio": float(ratio.mean()),
    }


def normalised_score(ratio: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """s_l = (r_l − 1) / (c_l − 1) per block (NaN where the ceiling is ≤ 1: nothing to normalise by)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ceiling > 1, (ratio - 1) / (ceiling - 1), np.nan)


def compute_usefulness(
    model: Transformer,
    windows: torch.Tensor,
    micro_batch: int = 2,
    bf16: bool = False,
    tau: float = 0.1,
    transpose_bug: bool = True,
    chain_tokens: int = 4096,
    progress: bool = False,
    boot_resamples: int = stats.N_BOOT,
    boot_seed: int = 0,
) -> MetricResult:
    """M6 on ANALYSIS_SET windows (N, T). Primary fields use x W + b; with transpose_bug also the D1/D2a variant
    (fields suffixed `_transpose_bug`, table rows with variant = "transpose_bug"); always the ceilings, the
    normalised score, the floor flag and window-bootstrap intervals ci.{usefulness, usefulness_transpose_bug,
    mean_ratio, normalised_score} (`boot_resamples` resamples; 0 = none)."""
    normed_last = transpose_bug and model.cfg.moe is None  # D2a concerns the dense models only (protocol D2)
    fits = fit_block_maps(model, windows, micro_batch, bf16, progress, normed_last=normed_last)
    released = fits[:-2] + fits[-1:] if normed_last else None
    fits = fits[: model.cfg.n_layers]
    variants = ((False, True) if transpose_bug else (False,)) + ("ceiling",)
    base, sums, targets = replacement_losses(model, windows, fits, variants, micro_batch, bf16, chain_tokens, progress,
                                             per_window=True, released_fits=released)
    N = windows.shape[0]
    l0 = base.sum() / (N * targets)
    lin = {v: sums[v].sum(0) / (N * targets) for v in variants}
    ceiling = lin["ceiling"] / l0
    rows = []
    scalars: dict = {"baseline_loss": l0, "tau": tau, "n_windows": int(N), "window": int(windows.shape[1]),
                     "ridge_layers": [i for i, f in enumerate(fits) if f.ridge],
                     "released_last_target": "N_f(x_L)" if normed_last else "x_L"}
    for v in variants[:-1]:
        name = "transpose_bug" if v else "correct"
        suffix = "_transpose_bug" if v else ""
        summary = usefulness_summary(l0, lin[v], tau)
        scalars.update({k + suffix: val for k, val in summary.items()})
        scalars["ratio" + suffix] = (lin[v] / l0).tolist()
        for layer, loss in enumerate(lin[v]):
            rows.append({"variant": name, "layer": layer, "loss_lin": loss, "loss_increase": loss - l0,
                         "ratio": loss / l0, "useful": bool(loss / l0 > 1 + tau), "ridge": fits[layer].ridge,
                         "ceiling": ceiling[layer], "normalised": float(normalised_score(loss / l0, ceiling[layer]))})
    score = normalised_score(lin[False] / l0, ceiling)
    scalars.update({"ceiling": ceiling.tolist(), "ceiling_max": float(ceiling.max()),
                    "normalised": score.tolist(),
                    "normalised_score": float(np.nanmean(score)) if np.isfinite(score).any() else float("nan"),
                    "floor": bool(ceiling.max() <= 1 + tau)})
    if boot_resamples:
        def scores(i: np.ndarray) -> dict[str, float]:
            b = base[i].sum()
            r = {v: sums[v][i].sum(0) / b for v in variants}
            s = normalised_score(r[False], r["ceiling"])
            out = {"usefulness": float((r[False] > 1 + tau).mean()), "mean_ratio": float(r[False].mean()),
                   "normalised_score": float(np.nanmean(s)) if np.isfinite(s).any() else float("nan")}
            if True in r:
                out["usefulness_transpose_bug"] = float((r[True] > 1 + tau).mean())
            return out

        keys = list(scores(np.arange(N)))
        scalars["ci"] = {}
        for key in keys:
            low, high = stats.window_interval(lambda i, k=key: scores(i)[k], N, boot_seed, n_resamples=boot_resamples)
            scalars["ci"][key] = {"low": low, "high": high}
    return MetricResult(scalars, pd.DataFrame(rows))
