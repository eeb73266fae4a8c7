"""M7 weight sparsity (protocol §2 M7): hand-built tensors and the parameter subsets of a model."""

from __future__ import annotations

import pytest
import torch

from _metrics_testutil import DENSE, MOE, one_thread, tiny_model  # noqa: F401
from sparsecod.metrics.weight_sparsity import below_counts, compute_weight_sparsity, eps_key, parameter_subsets


def test_counts_on_a_hand_built_tensor() -> None:
    t = torch.tensor([0.0, 1e-7, -5e-6, 2e-4, -2e-3, 0.05, 0.5, -1.0, 1e-2])
    counts, total = below_counts([t[:4], t[4:]], (1e-1, 1e-2, 1e-3, 1e-5, 1e-6))
    # |θ| = 1e-2 is not < 1e-2 (strict), but is < 1e-1
    assert counts == [7, 5, 4, 3, 2] and total == 9
    counts, _ = below_counts([t], (1e-6, 1e-1))  # order of thresholds is kept
    assert counts == [2, 7]


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_subsets_partition_the_parameters(cfg) -> None:
    model = tiny_model(cfg)
    subsets = parameter_subsets(model)
    every = set(subsets["all"])
    assert set(subsets["decayed"]) | set(subsets["non_decayed"]) == every
    assert not set(subsets["decayed"]) & set(subsets["non_decayed"])
    parts = subsets["block_matrices"] + subsets["lm_head"] + subsets["embedding"] + subsets["norm_gains"]
    assert sorted(parts) == sorted(every), "the four kinds cover every parameter once"
    assert subsets["lm_head"] == ["lm_head.weight"] and subsets["embedding"] == ["wte.weight"]
    assert "final_norm.weight" in subsets["norm_gains"]
    if cfg.moe is not None:
        assert "blocks.0.ffn.router.weight" in subsets["block_matrices"]
        assert "blocks.0.ffn.experts.gate" in subsets["block_matrices"]


def test_model_sparsity_known_values() -> None:
    model = tiny_model(DENSE)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = compute_weight_sparsity(model, eps=(1e-1, 1e-3))
    s = result.scalars["sparsity"]
    assert s["lm_head"] == {eps_key(1e-1): 1.0, eps_key(1e-3): 1.0}
    assert s["norm_gains"][eps_key(1e-1)] == 0.0, "gains are 1"
    n = result.scalars["n_params"]
    assert n["all"] == sum(p.numel() for p in model.parameters())
    expected_all = (n["lm_head"] * 1.0 + n["block_matrices"] * s["block_matrices"]["0.001"]
                    + n["embedding"] * s["embedding"]["0.001"]) / n["all"]
    assert s["all"]["0.001"] == pytest.approx(expected_all)
    assert len(result.table) == 7 * 2 and set(result.table["subset"]) == set(s)
