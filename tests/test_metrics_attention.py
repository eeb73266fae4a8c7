"""M8/M9 attention sparsity and entropy (protocol §2 M8, M9, Q3): hand-computed maps, chunking, model wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _metrics_testutil import DENSE, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.attention import attention_maps_stats, compute_attention, head_stats, tile_shape
from sparsecod.model.attention import causal_attention_probs


def test_uniform_causal_attention() -> None:
    """q = 0: A[i, j] = 1/(i+1) for j <= i, entropy log(i+1), normalized entropy 1."""
    B, T = 2, 8
    q, k = torch.zeros(B, T, 4), torch.randn(B, T, 4)
    below, ent, ent_norm = head_stats(q, k, eps=(0.21, 0.13, 0.01), query_chunk=3)
    # 1/(i+1) < 0.21 for i >= 4: 5+6+7+8 = 26 entries per window; < 0.13 for i = 7: 8; < 0.01: none
    assert below.tolist() == [2 * 26, 2 * 8, 0]
    assert ent == pytest.approx(B * sum(math.log(i + 1) for i in range(T)), rel=1e-6)
    assert ent_norm == pytest.approx(B * (T - 1), rel=1e-6)


def test_one_hot_attention() -> None:
    """q_i = k_i = 10·e_i: A ≈ I, so every causal off-diagonal entry is < 1e-5 and the entropy ≈ 0."""
    T = 8
    k = 10 * torch.eye(T)[None]
    below, ent, _ = head_stats(k.clone(), k, eps=(1e-5,), query_chunk=T)
    assert below.tolist() == [T * (T + 1) // 2 - T]
    assert 0 <= ent < 1e-6


def reference_stats(q: torch.Tensor, k: torch.Tensor, eps) -> tuple[list[int], float, float]:
    """Straightforward numpy oracle on the full T×T map."""
    qn, kn = q.double().numpy(), k.double().numpy()
    T = qn.shape[1]
    scores = qn @ kn.transpose(0, 2, 1) / math.sqrt(qn.shape[-1])
    causal = np.tril(np.ones((T, T), dtype=bool))
    scores = np.where(causal, scores, -np.inf)
    A = np.exp(scores - scores.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    counts = [int(((A < e) & causal).sum()) for e in eps]
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.where(A > 0, A * np.log(A), 0.0).sum(-1)
    return counts, float(H.sum()), float((H[:, 1:] / np.log(np.arange(2, T + 1))).sum())


def test_chunked_equals_unchunked_and_matches_the_oracle() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = 3 * torch.randn(2, 37, 8, generator=g), torch.randn(2, 37, 8, generator=g)
    eps = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    full = head_stats(q, k, eps, query_chunk=37)
    for chunk in (1, 5, 16):
        below, ent, ent_norm = head_stats(q, k, eps, query_chunk=chunk)
        assert below.tolist() == full[0].tolist()
        assert ent == pytest.approx(full[1], rel=1e-6) and ent_norm == pytest.approx(full[2], rel=1e-6)
    counts, ent, ent_norm = reference_stats(q, k, eps)
    assert np.abs(np.array(counts) - full[0]).max() <= 2  # fp32 vs fp64 at the thresholds
    assert full[1] == pytest.approx(ent, rel=1e-5) and full[2] == pytest.approx(ent_norm, rel=1e-5)


def test_heads_of_a_tile_equal_single_heads_and_tile_shape() -> None:
    g = torch.Generator().manual_seed(2)
    q, k = 2 * torch.randn(2, 3, 9, 4, generator=g), torch.randn(2, 3, 9, 4, generator=g)
    eps = (1e-1, 1e-3)
    below, ent, ent_norm = head_stats(q, k, eps, query_chunk=4)
    for h in range(3):
        b, e, en = head_stats(q[:, h], k[:, h], eps, query_chunk=9)
        assert below[h].tolist() == b.tolist()
        assert ent[h] == pytest.approx(e, rel=1e-6) and ent_norm[h] == pytest.approx(en, rel=1e-6)
    assert tile_shape(1, 16, 8192, 1 << 24) == (1, 2048), "T_e = 8192: one head, 2048 query rows (64 MB)"
    assert tile_shape(1, 16, 256, 1 << 24) == (16, 256), "short maps: all heads at once"
    assert tile_shape(1, 16, 100, 10) == (1, 1)


def test_query_offset_of_causal_attention_probs() -> None:
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 2, 10, 4, generator=g), torch.randn(1, 1, 10, 4, generator=g)
    full = causal_attention_probs(q, k)
    tile = causal_attention_probs(q[:, :, 4:7], k[:, :, :7], q_start=4)
    torch.testing.assert_close(tile, full[:, :, 4:7, :7])


@pytest.mark.parametrize("tile", [5 * 12, 3 * 12 * 12, 1 << 20], ids=["1head-5rows", "3heads", "all-heads"])
def test_model_stats_match_the_models_own_attention_maps(tile) -> None:
    """GQA mapping and the qkv path: per-head stats equal those of the maps the model's eager path returns."""
    model = tiny_model(DENSE, scale=4.0)
    windows = tokens(2, 12)
    eps = (1e-1, 1e-2)
    table = attention_maps_stats(model, windows, eps, tile_elements=tile)
    with torch.no_grad():
        ctx = model(windows, capture=True, attn_probs=True).ctx
    causal = torch.tril(torch.ones(12, 12, dtype=torch.bool))
    for layer, trace in enumerate(ctx.traces):
        A = trace.attn_probs  # (B, H, T, T)
        for h in range(DENSE.n_heads):
            rows = table[(table["layer"] == layer) & (table["head"] == h)].set_index("eps")
            for e in eps:
                expected = ((A[:, h] < e) & causal).sum().item() / (2 * 12 * 13 / 2)
                assert rows.loc[e, "sparsity"] == pytest.approx(expected, abs=1.5 / (2 * 78))
            H = -torch.special.xlogy(A[:, h], A[:, h]).sum(-1)
            assert rows["entropy"].iloc[0] == pytest.approx(H.mean().item(), rel=1e-4)


def test_compute_attention_aggregates() -> None:
    model = tiny_model(DENSE, scale=4.0)
    result = compute_attention(model, {6: tokens(2, 6), 10: tokens(1, 10)}, eps=(1e-1, 1e-3), tile_elements=40)
    t = result.table
    assert len(t) == 2 * DENSE.n_layers * DENSE.n_heads * 2
    sub = t[(t.T_e == 10) & (t.eps == 1e-1)]
    assert result.scalars["sparsity"]["10"]["0.1"] == pytest.approx(sub["sparsity"].mean())
    assert result.scalars["entropy"]["6"] == pytest.approx(t[(t.T_e == 6) & (t.eps == 1e-1)]["entropy"].mean())
    assert len(result.scalars["sparsity_by_layer"]["10"]["0.001"]) == DENSE.n_layers
    assert result.scalars["n_windows"] == {"6": 2, "10": 1}
