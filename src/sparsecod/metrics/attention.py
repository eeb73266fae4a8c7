"""M8 / M9: attention sparsity and entropy per head, layer and model (protocol §2 M8, M9, Q2, Q3, Q11, D8).

Attention probabilities are materialized explicitly (fp32 causal softmax after RoPE, GQA: query head h
uses KV head ⌊h/G⌋) from `Attention.qkv_heads` and `causal_attention_probs`, in tiles of a few heads ×
a chunk of query rows holding at most `analysis.attention_tile_elements` probabilities (default 2^24 = 64 MB
fp32): one head and 2048 query rows at T_e = 8192, so all heads' T×T maps never exist at once, while short
lengths batch several heads per tile. Only causal entries j ≤ i count (Q3):

    S_ε^{(l,h)} = #{(n, i, j): j ≤ i, A_{n,i,j} < ε} / (N · T_e (T_e + 1) / 2)
    H^{(l,h)}   = mean_{n,i} −Σ_{j≤i} A_{n,i,j} log A_{n,i,j}   (natural log, 0·log 0 = 0)
    H_norm      = mean_{n, i≥1} H_{n,i} / log(i + 1)             (length-normalized variant)

Layer values are means over heads, global values means over (layer, head). Evaluated on ATTN_SET(T_e)
for every T_e in `analysis.attention_lengths` (RoPE extrapolates beyond the training length). Counts are kept per
window, so `ci.sparsity[T_e][ε]` is a percentile bootstrap interval of the global sparsity over the windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..model.attention import causal_attention_probs
from .. import stats
from ..model.transformer import Transformer
from .results import MetricResult
from .settings import ATTENTION_EPS
from .states import autocast, micro_batches, model_device
from .weight_sparsity import eps_key


def head_stats(
    q: torch.Tensor, k: torch.Tensor, eps: Sequence[float], query_chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heads of one tile: q (B, n, T, d_h), k (B, n, T, d_h) (k already mapped to each query head's KV head)
    -> (#causal entries < ε (n, len(eps)), Σ_{b,i} H_{b,i} (n,), Σ_{b,i≥1} H/log(i+1) (n,)).

    A 3-D q/k (B, T, d_h) is one head (results then have no head axis). Processes `query_chunk` query
    rows at a time against keys 0..i1−1, so a tile holds at most B·n·query_chunk·T probabilities.
    """
    single = q.dim() == 3
    if single:
        q, k = q[:, None], k[:, None]
    B, n, T, _ = q.shape
    below = np.zeros((n, len(eps)), dtype=np.int64)
    ent, ent_norm = np.zeros(n), np.zeros(n)
    for i0 in range(0, T, query_chunk):
        i1 = min(T, i0 + query_chunk)
        c = i1 - i0
        A = causal_attention_probs(q[:, :, i0:i1], k[:, :, :i1], q_start=i0)  # (B, n, c, i1)
        masked = B * c * (c - 1) // 2  # future entries of the tile per head: exactly 0, so below every ε
        for e_i, e in enumerate(eps):
            below[:, e_i] += (A < e).sum(dim=(0, 2, 3)).cpu().numpy() - masked
        H = -torch.special.xlogy(A, A).sum(dim=-1).double()  # (B, n, c)
        ent += H.sum(dim=(0, 2)).cpu().numpy()
        pos = torch.arange(i0, i1, device=A.device)
        keep = pos >= 1
        if keep.any():
            ent_norm += (H[:, :, keep] / torch.log1p(pos[keep].double())).sum(dim=(0, 2)).cpu().numpy()
    if single:
        return below[0], ent[0], ent_norm[0]
    return below, ent, ent_norm


def tile_shape(B: int, H: int, T: int, tile_elements: int) -> tuple[int, int]:
    """(heads per tile, query rows per tile) so that B·heads·rows·T <= tile_elements (at least 1 head, 1 row)."""
    rows = max(1, min(T, tile_elements // max(B * T, 1)))
    heads = max(1, min(H, tile_elements // max(B * rows * T, 1)))
    return heads, rows


@torch.no_grad()
def attention_maps_stats(
    model: Transformer,
    windows: torch.Tensor,
    eps: Sequence[float] = ATTENTION_EPS,
    tile_elements: int = 1 << 24,
    bf16: bool = False,
    progress: bool = False,
    per_window: bool = False,
):
    """Per (layer, head) sparsity for each ε and entropies over windows (N, T_e); one window per forward.
    per_window=True also returns the counts below each ε per window (N, L, H, len(eps)).

    Probabilities are materialized in tiles of at most `tile_elements` floats (a few heads × all rows at
    short T_e; one head × a query chunk at long T_e).
    """
    device = model_device(model)
    cfg = model.cfg
    L, H, G = cfg.n_layers, cfg.n_heads, cfg.group_size
    N, T = windows.shape
    heads_per_tile, rows = tile_shape(1, H, T, tile_elements)
    kv_of = torch.arange(H, device=device) // G  # query head h uses KV head ⌊h/G⌋
    below_w = np.zeros((N, L, H, len(eps)), dtype=np.int64)
    ent = np.zeros((L, H))
    ent_norm = np.zeros((L, H))
    bar = tqdm(total=N * L, desc=f"attention T={T}", disable=not progress)
    with autocast(device, bf16):
        for n, idx in enumerate(micro_batches(windows, 1)):
            idx = idx.to(device)
            ctx = model.context(T, device)
            x = model.embed(idx)
            for layer, block in enumerate(model.blocks):
                q, k, _ = block.attn.qkv_heads(block.attn_norm(x), ctx.cos, ctx.sin)
                for h0 in range(0, H, heads_per_tile):
                    h1 = min(H, h0 + heads_per_tile)
                    b, e, en = head_stats(q[:, h0:h1], k[:, kv_of[h0:h1]], eps, rows)
                    below_w[n, layer, h0:h1] += b
                    ent[layer, h0:h1] += e
                    ent_norm[layer, h0:h1] += en
                x = model.run_blocks(x, [block], ctx)
                bar.update()
    bar.close()
    below = below_w.sum(0)
    causal_entries = N * T * (T + 1) // 2
    rows_out = []
    for layer in range(L):
        for h in range(H):
            for e_i, e in enumerate(eps):
                rows_out.append({
                    "T_e": T, "layer": layer, "head": h, "eps": e,
                    "sparsity": below[layer, h, e_i] / causal_entries,
                    "entropy": ent[layer, h] / (N * T),
                    "entropy_norm": ent_norm[layer, h] / (N * (T - 1)) if T > 1 else math.nan,
                })
    return (pd.DataFrame(rows_out), below_w) if per_window else pd.DataFrame(rows_out)


def compute_attention(
    model: Transformer,
    windows_by_length: dict[int, torch.Tensor],
    eps: Sequence[float] = ATTENTION_EPS,
    tile_elements: int = 1 << 24,
    bf16: bool = False,
    progress: bool = False,
    boot_resamples: int = stats.N_BOOT,
    boot_seed: int = 0,
) -> MetricResult:
    """M8/M9 for every evaluation length T_e (ATTN_SET(T_e) windows (N, T_e) each).

    Table rows (T_e, layer, head, eps, sparsity, entropy, entropy_norm); the entropies repeat on each ε row.
    JSON: sparsity[T_e][ε], entropy[T_e], entropy_norm[T_e] (means over layers and heads) and the per-layer
    profiles sparsity_by_layer[T_e][ε], entropy_by_layer[T_e]; ci.sparsity[T_e][ε] its window bootstrap interval
    (`boot_resamples` resamples; 0 = none).
    """
    computed = [attention_maps_stats(model, w, eps, tile_elements, bf16, progress, per_window=True)
                for w in windows_by_length.values()]
    table = pd.concat([t for t, _ in computed], ignore_index=True)
    scalars: dict = {"lengths": list(windows_by_length), "eps": list(eps),
                     "n_windows": {str(T): int(w.shape[0]) for T, w in windows_by_length.items()},
                     "sparsity": {}, "entropy": {}, "entropy_norm": {}, "sparsity_by_layer": {}, "entropy_by_layer": {}}
    for T, part in table.groupby("T_e"):
        key = str(int(T))
        by_eps = part.groupby("eps")
        scalars["sparsity"][key] = {eps_key(e): float(g["sparsity"].mean()) for e, g in by_eps}
        scalars["sparsity_by_layer"][key] = {eps_key(e): g.groupby("layer")["sparsity"].mean().tolist()
                                             for e, g in by_eps}
        heads = part[part["eps"] == eps[0]]
        scalars["entropy"][key] = float(heads["entropy"].mean())
        scalars["entropy_norm"][key] = float(heads["entropy_norm"].mean())
        scalars["entropy_by_layer"][key] = heads.groupby("layer")["entropy"].mean().tolist()
    if boot_resamples:
        scalars["ci"] = {"sparsity": {}}
        for T, (_, below_w) in zip(windows_by_length, computed):
            per = {}
            for e_i, e in enumerate(eps):
                def sparsity(i: np.ndarray, e_i: int = e_i, T: int = T) -> float:
                    return float(below_w[i, :, :, e_i].sum(0).mean() / (len(i) * T * (T + 1) // 2))

                low, high = stats.window_interval(sparsity, below_w.shape[0], boot_seed, n_resamples=boot_resamples)
                per[eps_key(e)] = {"low": low, "high": high}
            scalars["ci"]["sparsity"][str(int(T))] = per
    return MetricResult(scalars, table)
