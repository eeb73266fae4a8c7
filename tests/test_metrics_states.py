"""Shared forward helpers of the metric suite: residual states, losses, batched intervention runs (issue 4)."""

from __future__ import annotations

import pytest
import torch

from _metrics_testutil import DENSE, MOE, one_thread, tiny_model, tokens  # noqa: F401
from sparsecod.metrics.states import Chain, ce_sum, residual_states, run_chains


def test_residual_states_are_the_captured_block_inputs_and_outputs() -> None:
    model = tiny_model(DENSE)
    idx = tokens(2, 7)
    with torch.no_grad():
        ctx = model.context(7, torch.device("cpu"), capture=True)
        model.run_blocks(model.embed(idx), model.blocks, ctx)
        xs = residual_states(model, model.embed(idx), model.blocks, model.context(7, torch.device("cpu")))
    assert len(xs) == DENSE.n_layers + 1
    for layer, trace in enumerate(ctx.traces):
        torch.testing.assert_close(xs[layer], trace.input)
        torch.testing.assert_close(xs[layer + 1], trace.output)
    s, n = ce_sum(model, xs[-1], idx)
    with torch.no_grad():
        logits = model(idx).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten(), reduction="sum")
    assert n == 2 * 6 and s == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
@pytest.mark.parametrize("max_tokens", [0, 20, 10_000])
def test_run_chains_equals_running_each_chain_alone(cfg, max_tokens) -> None:
    model = tiny_model(cfg, scale=2.0)
    b = list(model.blocks)
    ctx = model.context(5, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    chains = [
        Chain(torch.randn(2, 5, cfg.d_model, generator=g), [b[1], b[2], b[3]], offset=1),
        Chain(torch.randn(1, 5, cfg.d_model, generator=g), [b[3], b[2], b[1], b[0]], offset=0),
        Chain(torch.randn(3, 5, cfg.d_model, generator=g), [b[2], b[3]], offset=2),
        Chain(torch.randn(2, 5, cfg.d_model, generator=g), [], offset=4),
    ]
    done, steps = {}, []
    with torch.no_grad():
        run_chains(model, chains, ctx, max_tokens, on_step=lambda c, k, xi, xo: steps.append((c, k)),
                   on_done=lambda c, x: done.__setitem__(c, x))
        for c, chain in enumerate(chains):
            torch.testing.assert_close(done[c], model.run_blocks(chain.x, chain.blocks, ctx), rtol=1e-5, atol=1e-6)
    assert sorted(steps) == [(c, k) for c, chain in enumerate(chains) for k in range(len(chain.blocks))]


def test_per_window_cross_entropy_sums_to_the_batch_sum() -> None:
    from sparsecod.metrics.states import ce_per_window, ce_sum

    model = tiny_model(DENSE)
    idx = tokens(5, 9)
    x = model.run_blocks(model.embed(idx), list(model.blocks), model.context(9, torch.device("cpu")))
    per = ce_per_window(model, x, idx)
    total, n = ce_sum(model, x, idx)
    assert per.shape == (5,) and n == 5 * 8 and float(per.sum()) == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_intervene_cached_runs_equal_the_runs_from_the_embedding(cfg) -> None:
    """The shared loop of M4-M6 (intervene.py): a skipped block, a swap, a replaced state and an empty tail give
    the same block inputs/outputs and final states from the cached x_start as recomputed from the embedding; the
    micro-batches fill every window's row once."""
    from sparsecod.metrics.intervene import Run, intervene

    model = tiny_model(cfg, scale=2.0)
    b = list(model.blocks)
    L = len(b)
    g = torch.Generator().manual_seed(1)
    runs = [Run(1, b[2:], depth=2), Run(0, [b[2], b[1], b[0], *b[3:]]),
            Run(3, b[3:], x=torch.randn(cfg.d_model, generator=g)), Run(L, [])]
    windows = tokens(5, 6)
    seen: dict[bool, dict] = {}
    for from_cache in (True, False):
        steps, done, rows = {}, {}, []
        intervene(model, windows, runs, micro_batch=2, chain_tokens=20, from_cache=from_cache,
                  on_batch=lambda bt: rows.append((bt.rows.start, bt.rows.stop, len(bt.xs), len(bt.deltas))),
                  on_step=lambda bt, c, k, xi, xo: steps.__setitem__((bt.rows.start, c, k), (xi, xo)),
                  on_done=lambda bt, c, x: done.__setitem__((bt.rows.start, c), x))
        assert rows == [(0, 2, L + 1, L), (2, 4, L + 1, L), (4, 5, L + 1, L)]
        expected = [(0, c, k) for c, r in enumerate(runs) for k in range(len(r.blocks))]
        assert sorted(k for k in steps if k[0] == 0) == expected
        seen[from_cache] = {"steps": steps, "done": done}
    for kind in ("steps", "done"):
        assert seen[True][kind].keys() == seen[False][kind].keys()
        for key, value in seen[True][kind].items():
            torch.testing.assert_close(value, seen[False][kind][key], rtol=1e-5, atol=1e-5)
