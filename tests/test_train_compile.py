"""torch.compile of the blocks (`train.compile`, train/parallel.py; issue 16.6): compiled = eager, one graph per block."""

from __future__ import annotations

import copy

import pytest
import torch

from _train_testutil import MODELS, one_thread  # noqa: F401  (fixture)
from sparsecod.model import Transformer
from sparsecod.train.parallel import compile_blocks, resolve_compile

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(V: int, B: int = 2, T: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def test_compile_setting_is_on_for_cuda_only_under_auto():
    assert resolve_compile("auto", "cuda") and not resolve_compile("auto", "cpu")
    assert resolve_compile(True, "cpu") and not resolve_compile(False, "cuda")


@pytest.mark.integration
@pytest.mark.parametrize(("family", "ce_chunk"), [("dense", None), ("dense", 7), ("moe", None)])
def test_compiled_blocks_give_the_eager_loss_and_gradients(family, ce_chunk, monkeypatch):
    """fp32 on CPU; the MoE's experts run eagerly inside the compiled block; ce_chunk: the chunked loss compiled."""
    if ce_chunk is not None:
        import sparsecod.model.transformer as tr

        monkeypatch.setattr(tr, "CE_CHUNK_TOKENS", ce_chunk)
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = Transformer(MODELS[family])
    compiled = copy.deepcopy(eager)
    compile_blocks(compiled)
    assert list(dict(compiled.named_parameters())) == list(dict(eager.named_parameters()))  # names unchanged
    idx, targets = _batch(MODELS[family].vocab_size)
    for step in range(2):  # the second call runs the cached graph
        outs = []
        for model in (eager, compiled):
            model.zero_grad()
            out = model(idx, targets, capture=True, return_logits=False)
            out.loss.backward()
            outs.append((out, [p.grad for p in model.parameters()]))
        (a, ga), (b, gb) = outs
        torch.testing.assert_close(b.loss, a.loss, rtol=0, atol=1e-5)
        if family == "moe":
            torch.testing.assert_close(b.aux_loss, a.aux_loss, rtol=0, atol=1e-5)
        assert len(b.ctx.traces) == len(a.ctx.traces) == MODELS[family].n_layers
        for x, y in zip(ga, gb):
            torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("capture", [False, True])
def test_dense_block_compiles_to_one_graph(capture):
    torch.manual_seed(0)
    model = Transformer(MODELS["dense"])
    x = torch.randn(2, 16, MODELS["dense"].d_model, requires_grad=True)
    ctx = model.context(16, x.device, capture=capture)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model.blocks[0].forward)(x, ctx)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    assert len(ctx.traces) == (1 if capture else 0)  # the trace side effect survives compilation


@pytest.mark.integration
def test_fp32_moe_block_breaks_only_around_the_eager_experts():
    """grouped_mm has no fp32 meta function: the experts run eagerly (torch.compiler.disable), nothing else breaks."""
    torch.manual_seed(0)
    model = Transformer(MODELS["moe"])
    x = torch.randn(2, 16, MODELS["moe"].d_model, requires_grad=True)
    ctx = model.context(16, x.device)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model.blocks[0].forward)(x, ctx)
    reasons = [str(r.reason) for r in explanation.break_reasons]
    assert reasons and all("_experts" in r and "torch.compiler.disable" in r for r in reasons), reasons
    assert len(ctx.moe_aux) == 1
