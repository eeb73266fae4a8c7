"""M10 held-out kurtosis and M11 perplexity (protocol §2 M10, M11, §7): Gaussian activations, uniform logits."""

from __future__ import annotations

import math

import pytest
import torch

from _metrics_testutil import make_identity, one_thread, tokens  # noqa: F401
from sparsecod.metrics.kurtosis import compute_kurtosis
from sparsecod.metrics.perplexity import compute_perplexity
from sparsecod.model import ModelConfig, Transformer


def test_kurtosis_of_gaussian_block_outputs_is_three() -> None:
    """Identity blocks pass embedding rows through: i.i.d. Gaussian features, κ ≈ 3 (zero sub-layer outputs: 3)."""
    cfg = ModelConfig(n_layers=2, d_model=8, n_heads=2, n_kv_heads=2, d_ff=8, vocab_size=4096, pad_vocab_to=64)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    for layer in range(2):
        make_identity(model, layer)
    result = compute_kurtosis(model, tokens(16, 256, vocab=4096), micro_batch=4)
    for k in result.table["out_kurtosis"]:
        assert k == pytest.approx(3.0, abs=0.2)
    assert (result.table["attn_out_kurtosis"] == 3.0).all() and (result.table["ffn_out_var"] == 0.0).all()
    assert result.scalars["var_pre"] == pytest.approx(0.02**2, rel=0.1)
    assert result.scalars["var_post"] == pytest.approx(1.0, rel=0.15), "RMS-normalized, gain 1"


def test_heavy_tailed_features_have_large_kurtosis() -> None:
    cfg = ModelConfig(n_layers=1, d_model=8, n_heads=2, n_kv_heads=2, d_ff=8, vocab_size=1024, pad_vocab_to=64)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    make_identity(model, 0)
    with torch.no_grad():
        model.wte.weight[:, 0] = 0.0
        model.wte.weight[::64, 0] = 10.0  # feature 0: a rare outlier (1 token in 64)
    windows = tokens(8, 256, vocab=1024)
    result = compute_kurtosis(model, windows, micro_batch=8)
    p = (windows % 64 == 0).double().mean().item()
    kappa_0 = 1 / (p * (1 - p)) - 3  # Pearson kurtosis of a Bernoulli(p) feature, ≈ 62
    assert kappa_0 > 40
    assert result.table["out_kurtosis"].iloc[0] == pytest.approx((kappa_0 + 7 * 3.0) / 8, abs=0.3)


def test_uniform_logits_give_the_vocabulary_size() -> None:
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2, n_kv_heads=1, d_ff=16, vocab_size=128, pad_vocab_to=64)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = compute_perplexity(model, tokens(5, 16, vocab=128), tokens(3, 8, vocab=128), batch_tokens=32)
    s = result.scalars
    assert s["ppl"] == pytest.approx(128, rel=1e-5) and s["analysis_ppl"] == pytest.approx(128, rel=1e-5)
    assert s["loss"] == pytest.approx(math.log(128), rel=1e-6)
    assert (s["seq_len"], s["n_windows"], s["n_targets"], s["analysis_targets"]) == (16, 5, 5 * 15, 3 * 7)
