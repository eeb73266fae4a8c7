"""M4 causal score (protocol §2 M4, §7): identity blocks, cached prefix == recomputation, aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from _metrics_testutil import DENSE, MOE, make_identity, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.causal import causal_matrix, causal_summary, compute_causal


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_skipping_an_identity_block_changes_nothing(cfg) -> None:
    model = tiny_model(cfg, scale=3.0)
    make_identity(model, 1)
    C = causal_matrix(model, tokens(5, 10), micro_batch=2)
    assert np.abs(C[1]).max() < 1e-6, "row of the identity block (0 up to batched-kernel rounding)"
    assert (C[0, 2:] > 1e-3).all() and C[2, 3] > 1e-3, "other skips do change later updates"
    assert (np.tril(C) == 0).all(), "C(s, l) = 0 for l <= s"


@pytest.mark.parametrize("chain_tokens", [0, 30, 4096], ids=["one-run-at-a-time", "groups", "all-batched"])
def test_cached_prefix_equals_recomputation_from_the_embedding(chain_tokens) -> None:
    model = tiny_model(DENSE, scale=3.0)
    windows = tokens(6, 12)
    cached = causal_matrix(model, windows, micro_batch=4, chain_tokens=chain_tokens)
    recomputed = causal_matrix(model, windows, micro_batch=4, from_cache=False)
    np.testing.assert_allclose(cached, recomputed, rtol=1e-5, atol=1e-7)
    assert cached[0, 1] > 0


def test_zero_guard_for_an_update_free_block() -> None:
    model = tiny_model(DENSE, scale=3.0)
    make_identity(model, 3)  # Δ_3 = 0 in every run: denominator 0 -> C(s, 3) = 0
    C = causal_matrix(model, tokens(3, 8))
    assert (C[:, 3] == 0).all() and np.isfinite(C).all()


def test_causal_aggregates_on_a_hand_built_matrix() -> None:
    C = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    s = causal_summary(C)
    assert s["causal_global"] == pytest.approx(2.0)  # mean over the 3 pairs
    assert s["causal_rowmean"] == pytest.approx((1.5 + 3.0) / 2)


def test_compute_causal_layout() -> None:
    model = tiny_model(DENSE)
    result = compute_causal(model, tokens(4, 8), micro_batch=3)
    assert len(result.table) == 6 and list(result.table.columns) == ["s", "l", "causal"]
    assert result.scalars["causal_global"] == pytest.approx(result.table["causal"].mean())
    assert len(result.scalars["row_means"]) == 3
