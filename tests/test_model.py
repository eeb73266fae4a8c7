"""Model tests (issue 2; protocol §1.2-§1.4): causality, RoPE, GQA, MoE dispatch and aux losses, interventions, sizes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from sparsecod.model import (
    AffineBlock,
    ConfigError,
    ModelConfig,
    MoEConfig,
    Transformer,
    load_model,
    save_model,
)
from sparsecod.model.attention import RotaryEmbedding, apply_rope
from sparsecod.model.moe import MoE
from sparsecod.model.params import measured_counts
from sparsecod.model.presets import PAPER_SIZES

DENSE = ModelConfig(n_layers=3, d_model=64, n_heads=4, n_kv_heads=2, d_ff=96, vocab_size=100, pad_vocab_to=64)
MOE = DENSE.replace(moe=MoEConfig(n_experts=8, top_k=2, d_expert=32, d_shared=32))


def _model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(cfg).eval()


def _tokens(B: int = 2, T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 100, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_causality(cfg: ModelConfig) -> None:
    model, idx = _model(cfg), _tokens()
    t = 7
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % 100
    with torch.no_grad():
        a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
    assert (a[:, t:] - b[:, t:]).abs().max() > 1e-4


def test_rope_depends_only_on_relative_position() -> None:
    rope = RotaryEmbedding(16, 10_000.0)
    cos, sin = rope(32, torch.device("cpu"))
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rope(q, cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k, cos[n : n + 1], sin[n : n + 1])
        return (qm * kn).sum()

    torch.testing.assert_close(score(5, 2), score(25, 22), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4))
    # norm preserving rotation
    rotated = apply_rope(q, cos[9:10], sin[9:10])
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_mha_equals_explicit_softmax_attention() -> None:
    cfg = DENSE.replace(n_kv_heads=4)
    attn = _model(cfg).blocks[0].attn
    x = torch.randn(2, 10, 64)
    cos, sin = RotaryEmbedding(16, 1e4)(10, torch.device("cpu"))
    out, _ = attn(x, cos, sin)
    q, k, v = attn.qkv_heads(x, cos, sin)
    scores = q @ k.transpose(-1, -2) / math.sqrt(16) + torch.full((10, 10), float("-inf")).triu(1)
    ref = attn.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, 64))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads() -> None:
    """Query head h uses KV head floor(h/G): a G=2 model equals an MHA model whose KV weights are repeated."""
    gqa = _model(DENSE)
    mha = Transformer(DENSE.replace(n_kv_heads=4)).eval()
    state = gqa.state_dict()
    H, Hkv, hd, d = 4, 2, 16, 64
    for name, w in list(state.items()):
        if name.endswith("attn.qkv.weight"):
            q, k, v = w.split([H * hd, Hkv * hd, Hkv * hd])
            rep = lambda t: t.view(Hkv, hd, d).repeat_interleave(H // Hkv, dim=0).reshape(H * hd, d)  # noqa: E731
            state[name] = torch.cat([q, rep(k), rep(v)])
    mha.load_state_dict(state)
    idx = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx).logits, mha(idx).logits, rtol=1e-5, atol=1e-5)


def test_explicit_probs_path_matches_sdpa() -> None:
    model, idx = _model(DENSE), _tokens()
    with torch.no_grad():
        a = model(idx).logits
        out = model(idx, capture=True, attn_probs=True)
    torch.testing.assert_close(a, out.logits, rtol=1e-5, atol=1e-5)
    probs = out.ctx.traces[0].attn_probs
    assert probs.shape == (2, 4, 12, 12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 12))
    assert probs.triu(1).abs().max() == 0


# --- MoE ----------------------------------------------------------------------------------------


def _moe_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Slow per-token reference of protocol §1.3 (raw softmax weights, shared expert mixing)."""
    flat = x.reshape(-1, x.shape[-1])
    probs = F.linear(flat.float(), moe.router.weight.float()).softmax(-1)
    k = moe.top_k
    out = torch.zeros_like(flat)
    ex = moe.experts
    for t in range(flat.shape[0]):
        p, ids = probs[t].topk(k)
        acc = torch.zeros(flat.shape[1])
        for pe, e in zip(p, ids):
            h = F.silu(flat[t] @ ex.gate[e]) * (flat[t] @ ex.up[e])
            acc = acc + pe * (h @ ex.down[e])
        if moe.shared is not None:
            acc = moe.shared(flat[t]) / (k + 1) + acc * k / (k + 1)
        out[t] = acc
    return out.view_as(x)


@pytest.mark.parametrize("shared", [0, 32])
def test_moe_dispatch_equals_per_token_reference(shared: int) -> None:
    cfg = MOE.replace(moe=MoEConfig(n_experts=8, top_k=2, d_expert=32, d_shared=shared))
    moe = _model(cfg).blocks[0].ffn
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        out, _ = moe(x)
        torch.testing.assert_close(out, _moe_reference(moe, x), rtol=1e-5, atol=1e-5)


def test_moe_grouped_mm_equals_loop_forward_and_backward() -> None:
    moe = _model(MOE).blocks[0].ffn
    x = torch.randn(3, 8, 64, requires_grad=True)
    results = []
    for impl in ("grouped_mm", "loop"):
        moe.zero_grad()
        x.grad = None
        moe.impl = impl
        out, aux = moe(x)
        (out.square().mean() + aux.lb_loss).backward()
        grads = [p.grad.clone() for p in moe.parameters()]
        results.append((out.detach(), x.grad.clone(), grads))
    (o1, gx1, g1), (o2, gx2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx1, gx2, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_moe_bf16_bucketed_grouped_mm_equals_loop_forward_and_backward() -> None:
    """On CPU in bf16 the expert blocks are padded to 32-row buckets; outputs and gradients stay the loop's."""
    torch.manual_seed(0)
    experts = _model(MOE).blocks[0].ffn.experts.to(torch.bfloat16)
    counts = torch.tensor([5, 0, 33, 2] + [1] * (experts.gate.shape[0] - 4))
    x = torch.randn(int(counts.sum()), experts.gate.shape[1], dtype=torch.bfloat16, requires_grad=True)
    results = []
    for impl in ("grouped_mm", "loop"):
        experts.zero_grad()
        x.grad = None
        out = experts(x, counts, impl)
        out.float().square().mean().backward()
        results.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in experts.parameters()]))
    (o1, gx1, g1), (o2, gx2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gx1, gx2, rtol=2e-2, atol=2e-2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_moe_experts_run_in_bf16_under_autocast() -> None:
    moe = _model(MOE).blocks[0].ffn
    x = torch.randn(2, 8, 64)
    seen = []
    hook = moe.experts.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        moe(x)
    hook.remove()
    assert seen == [torch.bfloat16]


def test_moe_never_runs_every_expert_on_every_token() -> None:
    moe = _model(MOE).blocks[0].ffn
    rows = []
    hook = moe.experts.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    moe(torch.randn(2, 8, 64))
    hook.remove()
    assert rows == [2 * 8 * 2]  # N tokens × k slots, not N × E


def test_balance_loss_is_one_under_uniform_routing() -> None:
    moe = _model(MOE).blocks[0].ffn
    with torch.no_grad():
        moe.router.weight.zero_()
        _, aux = moe(torch.randn(4, 8, 64))
    torch.testing.assert_close(aux.lb_loss, torch.tensor(1.0))
    torch.testing.assert_close(aux.z_loss, torch.tensor(math.log(8) ** 2))


def test_aux_losses_hand_computed() -> None:
    """E=2, k=1, 2 tokens; logits fixed by the router weight: hand-computed L_lb and L_z (protocol §1.3)."""
    cfg = ModelConfig(n_layers=1, d_model=2, n_heads=1, n_kv_heads=1, d_ff=0, vocab_size=8, pad_vocab_to=8,
                      moe=MoEConfig(n_experts=2, top_k=1, d_expert=4))
    moe = Transformer(cfg).blocks[0].ffn
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(2))
        x = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # logits (1,0) and (3,0): both tokens pick expert 0
        _, aux = moe(x)
    p1 = torch.tensor([1.0, 0.0]).softmax(0)
    p2 = torch.tensor([3.0, 0.0]).softmax(0)
    pbar = (p1 + p2) / 2
    lb = (2 / 1) * (2 / 2 * pbar[0] + 0 / 2 * pbar[1])
    z = (torch.tensor([1.0, 0.0]).logsumexp(0) ** 2 + torch.tensor([3.0, 0.0]).logsumexp(0) ** 2) / 2
    torch.testing.assert_close(aux.lb_loss, lb)
    torch.testing.assert_close(aux.z_loss, z)
    assert aux.counts.tolist() == [2, 0]


def test_model_aux_loss_weights_divided_by_layers() -> None:
    model, idx = _model(MOE), _tokens()
    out = model(idx, idx)
    lb = sum(a.lb_loss for a in out.ctx.moe_aux)
    z = sum(a.z_loss for a in out.ctx.moe_aux)
    torch.testing.assert_close(out.aux_loss, 0.01 * lb / 3 + 0.001 * z / 3)
    torch.testing.assert_close(out.loss, out.ce_loss + out.aux_loss)


# --- interventions --------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_skip_block_equals_model_without_it(cfg: ModelConfig) -> None:
    model, idx = _model(cfg), _tokens()
    small = Transformer(cfg.replace(n_layers=2)).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1.")}
    state = {k.replace("blocks.2.", "blocks.1."): v for k, v in state.items()}
    small.load_state_dict(state)
    with torch.no_grad():
        skipped = model(idx, blocks=[model.blocks[0], model.blocks[2]]).logits
        torch.testing.assert_close(skipped, small(idx).logits)


@pytest.mark.parametrize("cfg", [DENSE, MOE], ids=["dense", "moe"])
def test_swap_blocks_equals_model_built_swapped(cfg: ModelConfig) -> None:
    model, idx = _model(cfg), _tokens()
    swapped = copy.deepcopy(model)
    swapped.blocks = torch.nn.ModuleList([model.blocks[2], model.blocks[1], model.blocks[0]])
    with torch.no_grad():
        via_sequence = model(idx, blocks=[model.blocks[i] for i in (2, 1, 0)]).logits
        torch.testing.assert_close(via_sequence, swapped(idx).logits)
        assert not torch.allclose(via_sequence, model(idx).logits)


def test_identity_affine_replacement_of_identity_block_changes_nothing() -> None:
    model, idx = _model(DENSE), _tokens()
    with torch.no_grad():
        model.blocks[1].attn.out.weight.zero_()
        model.blocks[1].ffn.down.weight.zero_()  # block 1 is now exactly the identity
        base = model(idx).logits
        affine = AffineBlock(torch.eye(64), torch.zeros(64))
        replaced = model(idx, blocks=[model.blocks[0], affine, model.blocks[2]]).logits
        torch.testing.assert_close(base, replaced, rtol=0, atol=1e-6)


def test_capture_traces_follow_spec_notation() -> None:
    model, idx = _model(DENSE), _tokens()
    with torch.no_grad():
        out = model(idx, capture=True)
    traces = out.ctx.traces
    assert len(traces) == 3
    torch.testing.assert_close(traces[0].input, model.embed(idx))
    for tr, nxt in zip(traces, traces[1:]):
        assert tr.output is nxt.input
    for tr in traces:
        torch.testing.assert_close(tr.output, tr.input + tr.attn_out + tr.ffn_out)
    torch.testing.assert_close(model.head(traces[-1].output), out.logits)


# --- sizes, configs, io ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_paper_sizes_within_half_percent(name: str) -> None:
    counts = measured_counts(name)
    non_emb, active = PAPER_SIZES[name]
    assert abs(counts["non_embedding"] / non_emb - 1) < 0.005
    if active is not None:
        assert abs(counts["active"] / active - 1) < 0.005


@pytest.mark.parametrize("name", ["depth-L16", "moe-2BA400M", "moe-7BA1B", "abl-A8"])
def test_analytic_counts_equal_built_model(name: str) -> None:
    from sparsecod.model import get_preset

    assert get_preset(name).param_counts() == measured_counts(name)


def test_padded_vocab() -> None:
    assert ModelConfig(n_layers=1, d_model=8, n_heads=2, n_kv_heads=2, d_ff=8).padded_vocab == 50304


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
        (dict(d_model=66), "n_heads"),
        (dict(moe=dict(n_experts=4, top_k=5, d_expert=8)), "top_k"),
        (dict(bogus=1), "bogus"),
    ],
)
def test_config_errors_name_the_key(kwargs: dict, key: str) -> None:
    base = DENSE.to_dict()
    base.update(kwargs)
    with pytest.raises(ConfigError, match=key):
        ModelConfig.from_dict(base)


def test_save_load_roundtrip(tmp_path) -> None:
    model, idx = _model(MOE), _tokens()
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx).logits, model(idx).logits, rtol=0, atol=0)
    assert not list(tmp_path.glob(".model.*")), "temporary directory left behind"


def test_params_cli_csv(capsys) -> None:
    from sparsecod.cli import main

    assert main(["params", "--format", "csv", "depth-L12", "moe-2BA400M"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "run_id,total_params,non_embedding_params,active_params"
    row = dict(zip(lines[0].split(","), lines[2].split(",")))
    assert row["run_id"] == "moe-2BA400M"
    assert abs(int(row["active_params"]) / 0.360e9 - 1) < 0.005


def test_router_counts_equal_bincount_without_it() -> None:
    """Tokens per expert are counted on the device (scatter_add_, no host sync); same as bincount."""
    router = _model(MOE).blocks[0].ffn.router
    _, top_i, aux = router(torch.randn(37, 64))
    assert aux.counts.dtype == torch.int64
    assert torch.equal(aux.counts, torch.bincount(top_i.flatten(), minlength=router.n_experts))


def test_chunked_cross_entropy_equals_full_forward_and_backward() -> None:
    from sparsecod.model.transformer import chunked_cross_entropy

    model = _model(DENSE)
    idx, targets = _tokens(3, 12), _tokens(3, 12, seed=2)
    targets[0, -3:] = -100
    results = []
    for chunk in (None, 7):
        model.zero_grad()
        h = model.final_norm(model.run_blocks(model.embed(idx), model.blocks, model.context(12, idx.device)))
        if chunk is None:
            loss = F.cross_entropy(model.lm_head(h).float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        else:
            loss = chunked_cross_entropy(h, model.lm_head, targets, chunk=chunk)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l2, l1, rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_training_forward_uses_the_chunked_loss_for_many_tokens(monkeypatch) -> None:
    import sparsecod.model.transformer as tr

    model = _model(MOE)
    idx, targets = _tokens(2, 12), _tokens(2, 12, seed=3)
    full = model(idx, targets)
    monkeypatch.setattr(tr, "CE_CHUNK_TOKENS", 5)
    chunked = model(idx, targets, return_logits=False)
    assert chunked.logits is None
    torch.testing.assert_close(chunked.ce_loss, full.ce_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked.loss, full.loss, rtol=1e-6, atol=1e-6)
