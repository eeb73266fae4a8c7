"""M3 averaged block Jacobian (protocol §2 M3, §7): identity blocks, autograd reference, statistics, heatmap layers."""

from __future__ import annotations

import math

import pytest
import torch

from _metrics_testutil import DENSE, MOE, make_identity, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.jacobian import (
    averaged_jacobians,
    block_jacobian_sum,
    compute_jacobian,
    heatmap_layers,
    jacobian_stats,
)
from sparsecod.metrics.states import residual_states


def reference_jbar(block, x: torch.Tensor, make_ctx) -> torch.Tensor:
    """J̄ from the full autograd Jacobian (B, T, d, B, T, d), summed as in M3."""
    full = torch.autograd.functional.jacobian(lambda inp: block(inp, make_ctx()), x)
    B, T, d = x.shape
    per_seq = torch.stack([full[n, :, :, n] for n in range(B)])  # (B, T', d_out, T, d_in)
    return per_seq.sum(dim=(0, 1, 3)).double() / (B * T)


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense-gqa", "moe"])
@pytest.mark.parametrize("method,explicit", [("vmap", False), ("vmap", True), ("loop", False)])
def test_block_jacobian_matches_autograd_reference(cfg, method, explicit) -> None:
    model = tiny_model(cfg, scale=3.0)
    x = torch.randn(2, 6, cfg.d_model, generator=torch.Generator().manual_seed(0))

    def make_ctx():
        return model.context(6, x.device, attn_probs=explicit)

    ref = reference_jbar(model.blocks[1], x, make_ctx)
    got = block_jacobian_sum(model.blocks[1], x, make_ctx, chunk=7, method=method) / (2 * 6)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert (ref - torch.eye(cfg.d_model, dtype=ref.dtype)).abs().max() > 1e-2, "a non-trivial block"


def test_averaged_jacobians_over_micro_batches_match_reference() -> None:
    model = tiny_model(DENSE, scale=2.0)
    windows = tokens(5, 8)
    J = averaged_jacobians(model, windows, micro_batch=2, chunk=16)
    with torch.no_grad():
        xs = residual_states(model, model.embed(windows), model.blocks, model.context(8, torch.device("cpu")))
    for layer in (0, 3):  # layer 3 = the last block: its output is the pre-norm x_L (D2)
        ref = reference_jbar(model.blocks[layer], xs[layer], lambda: model.context(8, torch.device("cpu")))
        torch.testing.assert_close(J[layer], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_identity_block_has_zero_deviation(cfg) -> None:
    model = tiny_model(cfg)
    make_identity(model, 2)
    result = compute_jacobian(model, tokens(3, 8), micro_batch=2, chunk=8)
    row = result.table.set_index("layer").loc[2]
    assert row["deviation"] == 0.0 and row["offdiag_rms"] == 0.0
    assert row["diag_mean"] == 1.0 and row["diag_std"] == 0.0
    assert row["fro"] == pytest.approx(math.sqrt(cfg.d_model)) and row["spectral_norm"] == pytest.approx(1.0)
    assert result.table.set_index("layer").loc[1, "deviation"] > 0


def test_jacobian_stats_on_a_hand_built_matrix() -> None:
    J = torch.tensor([[1.0, 0.5], [0.0, 3.0]], dtype=torch.float64)
    s = jacobian_stats(J)
    assert s["deviation"] == pytest.approx(math.sqrt(0.25 + 4.0) / 2)
    assert s["offdiag_rms"] == pytest.approx(math.sqrt(0.25 / 2))
    assert s["diag_mean"] == pytest.approx(2.0) and s["diag_std"] == pytest.approx(math.sqrt(2.0))
    assert s["fro"] == pytest.approx(math.sqrt(1 + 0.25 + 9))
    assert s["spectral_norm"] == pytest.approx(torch.linalg.svdvals(J)[0].item())


def test_heatmap_layers_and_result_layout() -> None:
    assert heatmap_layers(32) == [1, 8, 16, 24, 30]
    assert heatmap_layers(12) == [1, 8, 10, 11]
    assert heatmap_layers(4) == [1, 2, 3]
    model = tiny_model(DENSE)
    result = compute_jacobian(model, tokens(2, 6), micro_batch=2, chunk=32)
    assert list(result.table.columns) == ["layer", "deviation", "offdiag_rms", "diag_mean", "diag_std", "fro",
                                          "spectral_norm"]
    assert sorted(result.arrays) == ["layer01", "layer02", "layer03"]
    assert result.arrays["layer02"].shape == (32, 32)
    assert result.scalars["deviation_mean"] == pytest.approx(result.table["deviation"].mean())
    assert result.scalars["identity_preservation"] == 1.0
