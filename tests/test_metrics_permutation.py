"""M5 permutation score (protocol §2 M5, §7): identical blocks, cached prefix == recomputation, baseline loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _metrics_testutil import DENSE, MOE, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.permutation import compute_permutation, permutation_losses, swapped


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_swapping_two_identical_blocks_scores_zero(cfg) -> None:
    model = tiny_model(cfg, scale=3.0)
    model.blocks[2].load_state_dict(model.blocks[0].state_dict())
    result = compute_permutation(model, tokens(5, 10), micro_batch=2)
    P = result.table.set_index(["i", "j"])["permutation"]
    assert P.loc[(0, 2)] == 0.0
    assert (P.drop((0, 2)) > 0).all()


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
@pytest.mark.parametrize("chain_tokens", [0, 100, 4096], ids=["one-run-at-a-time", "groups", "all-batched"])
def test_cached_prefix_equals_recomputation_from_the_embedding(cfg, chain_tokens) -> None:
    model = tiny_model(cfg, scale=3.0)
    windows = tokens(6, 12)
    l0, cached = permutation_losses(model, windows, micro_batch=4, chain_tokens=chain_tokens)
    l0_ref, recomputed = permutation_losses(model, windows, micro_batch=4, from_cache=False)
    assert l0 == pytest.approx(l0_ref, rel=1e-6)
    np.testing.assert_allclose(cached, recomputed, rtol=1e-5)
    assert np.isnan(cached[1, 0]) and np.isnan(cached[2, 2])


def test_baseline_loss_is_the_models_mean_cross_entropy() -> None:
    """ℓ_0 = mean CE over the T−1 targets of every window (protocol M5), checked against the model's own loss."""
    model = tiny_model(DENSE)
    windows = tokens(4, 9)
    targets = windows.clone()
    targets[:, :-1] = windows[:, 1:]
    targets[:, -1] = -100
    with torch.no_grad():
        ref = model(windows, targets).ce_loss.item()
    l0, _ = permutation_losses(model, windows, micro_batch=3)
    assert l0 == pytest.approx(ref, rel=1e-5)


def test_swapped_and_layout() -> None:
    assert swapped([0, 1, 2, 3], 1, 3) == [0, 3, 2, 1]
    model = tiny_model(DENSE)
    result = compute_permutation(model, tokens(2, 8))
    assert len(result.table) == 6
    expected = (result.table["loss"] - result.scalars["baseline_loss"]).abs() / result.scalars["baseline_loss"]
    np.testing.assert_allclose(result.table["permutation"], expected)
    assert result.scalars["permutation_global"] == pytest.approx(expected.mean())
