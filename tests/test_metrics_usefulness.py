"""M6 usefulness (protocol §2 M6, D1, §7): exactly affine blocks, a strongly non-linear block, the OLS solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _metrics_testutil import DENSE, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.usefulness import _ShiftedMoments, compute_usefulness, fit_block_maps, solve_affine
from sparsecod.model import AffineBlock, ModelConfig, Transformer


def test_exactly_affine_block_has_ratio_one_and_is_recovered() -> None:
    model = tiny_model(DENSE, scale=2.0)
    g = torch.Generator().manual_seed(3)
    W = torch.eye(32) + 0.3 * torch.randn(32, 32, generator=g) / 32**0.5
    b = 0.1 * torch.randn(32, generator=g)
    model.blocks[1] = AffineBlock(W, b)
    windows = tokens(6, 12)
    fit = fit_block_maps(model, windows)[1]
    assert not fit.ridge
    torch.testing.assert_close(fit.weight.float(), W, atol=2e-5, rtol=0)
    torch.testing.assert_close(fit.bias.float(), b, atol=2e-5, rtol=0)
    result = compute_usefulness(model, windows)
    ratio = result.table.query("variant == 'correct'").set_index("layer")["ratio"]
    assert ratio[1] == pytest.approx(1.0, abs=1e-5)
    bug = result.table.query("variant == 'transpose_bug'").set_index("layer")["ratio"]
    assert abs(bug[1] - 1.0) > 1e-4, "x Wᵀ + b (D1) is a different map for a non-symmetric W"


class BumpBlock(nn.Module):
    """y = x + (0, 0, bump_0(x_0), ..., bump_{V-1}(x_0)): a sharp radial-basis code of feature 0 (not affine)."""

    def __init__(self, centers: torch.Tensor, width: float) -> None:
        super().__init__()
        self.register_buffer("centers", centers)
        self.width = width

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        bumps = torch.exp(-(((x[..., :1] - self.centers) / self.width) ** 2))
        return x + torch.cat([torch.zeros_like(x[..., :2]), bumps], dim=-1)


def bump_language_model(V: int = 16, step: int = 5) -> tuple[Transformer, torch.Tensor]:
    """Tokens on a line (x = (s_v, 1, 0...)), next token = v + step mod V. Block 0 (bumps) makes the next token
    linearly readable, so the model predicts it almost perfectly; block 1 is the identity AffineBlock."""
    d = V + 2
    cfg = ModelConfig(n_layers=2, d_model=d, n_heads=1, n_kv_heads=1, d_ff=4, vocab_size=V, pad_vocab_to=V)
    model = Transformer(cfg).eval()
    s = torch.linspace(-1, 1, V)
    with torch.no_grad():
        model.wte.weight.zero_()
        model.wte.weight[:, 0] = s
        model.wte.weight[:, 1] = 1.0
        model.lm_head.weight.zero_()
        for u in range(V):
            model.lm_head.weight[(u + step) % V, 2 + u] = 5.0
    model.blocks[0] = BumpBlock(s, width=(2 / (V - 1)) / 3)
    model.blocks[1] = AffineBlock(torch.eye(d), torch.zeros(d))
    starts = torch.randint(0, V, (8, 1), generator=torch.Generator().manual_seed(0))
    windows = (starts + step * torch.arange(24)) % V
    return model, windows


def test_strongly_nonlinear_block_is_useful_and_identity_is_not() -> None:
    model, windows = bump_language_model()
    result = compute_usefulness(model, windows, transpose_bug=False)
    ratio = result.table.set_index("layer")["ratio"]
    assert result.scalars["baseline_loss"] < 0.01, "the bump model predicts its sequence"
    assert ratio[0] > 1.1 and ratio[0] > 100
    assert ratio[1] == pytest.approx(1.0, abs=1e-3)
    assert result.scalars["usefulness"] == 0.5
    assert (result.scalars["effective_layers"], result.scalars["wasted_layers"]) == (1, 1)
    assert result.scalars["ridge_layers"] == [0, 1], "rank-deficient inputs use the ridge fallback"
    assert "usefulness_transpose_bug" not in result.scalars


def test_solve_matches_least_squares_with_intercept() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 2.0, (300, 6))  # far from 0: the intercept matters
    Y = X @ rng.normal(size=(6, 4)) + rng.normal(size=4) + 0.5 * rng.normal(size=(300, 4))
    ref, *_ = np.linalg.lstsq(np.hstack([X, np.ones((300, 1))]), Y, rcond=None)
    m = _ShiftedMoments()
    for part in np.array_split(np.arange(300), 4):  # streamed over micro-batches
        m.add(torch.from_numpy(X[part]), torch.from_numpy(Y[part]))
    fit = m.fit()
    np.testing.assert_allclose(fit.weight.numpy(), ref[:6], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fit.bias.numpy(), ref[6], rtol=1e-9, atol=1e-10)
    assert not fit.ridge


def test_singular_gram_uses_the_ridge() -> None:
    S = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # rank 1
    fit = solve_affine(S, S, torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    assert fit.ridge and torch.isfinite(fit.weight).all()
    torch.testing.assert_close(S @ fit.weight, S, atol=1e-6, rtol=0)


def test_ceiling_normalised_score_floor_and_intervals() -> None:
    from sparsecod.metrics.usefulness import normalised_score

    model, windows = bump_language_model()
    res = compute_usefulness(model, windows, boot_resamples=200)
    s = res.scalars
    ratio, ceiling = np.array(s["ratio"]), np.array(s["ceiling"])
    assert len(ceiling) == 2 and s["ceiling_max"] == pytest.approx(ceiling.max()) and (ceiling > 100).all()
    np.testing.assert_allclose(s["normalised"], normalised_score(ratio, ceiling))
    assert s["normalised"][1] == pytest.approx(0.0, abs=1e-3), "the identity block: affine is enough"
    assert 0 < s["normalised"][0] <= 1.0 and s["normalised_score"] == pytest.approx(np.mean(s["normalised"]))
    assert s["floor"] is False
    for key in ("usefulness", "usefulness_transpose_bug", "normalised_score", "mean_ratio"):
        assert s["ci"][key]["low"] <= s[key] + 1e-12 and s[key] <= s["ci"][key]["high"] + 1e-12, key
    np.testing.assert_allclose(res.table.query("variant == 'correct'")["ceiling"], ceiling)
    untrained = compute_usefulness(tiny_model(DENSE, scale=2.0), tokens(6, 12), boot_resamples=0).scalars
    assert untrained["floor"] is True and max(untrained["ceiling"]) <= 1.1, "nothing to lose: a floor"


def test_transposed_variant_fits_the_last_dense_block_to_the_normed_state() -> None:
    """D1/D2a: the released computation regresses N_f(x_L) on x_{L-1} for the last block; other blocks unchanged."""
    from sparsecod.metrics.usefulness import replacement_losses

    model = tiny_model(DENSE, scale=2.0)
    windows = tokens(6, 12)
    fits = fit_block_maps(model, windows, normed_last=True)
    L = DENSE.n_layers
    assert len(fits) == L + 1
    _, plain = replacement_losses(model, windows, fits[:L], (True,))
    _, released = replacement_losses(model, windows, fits[:L], (True,), released_fits=fits[: L - 1] + fits[L:])
    np.testing.assert_allclose(plain[True][: L - 1], released[True][: L - 1])
    assert abs(plain[True][-1] - released[True][-1]) > 1e-6
    res = compute_usefulness(model, windows, boot_resamples=0)
    assert res.scalars["released_last_target"] == "N_f(x_L)"
    np.testing.assert_allclose(res.scalars["ratio_transpose_bug"], released[True] / res.scalars["baseline_loss"])
