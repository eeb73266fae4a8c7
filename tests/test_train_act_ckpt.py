"""`train.act_ckpt` (issue 16): per-block activation checkpointing leaves loss, gradients and logs unchanged."""

from __future__ import annotations

import pytest
import torch

from _train_testutil import MODELS, shard, tiny_run  # noqa: F401  (fixtures)
from sparsecod.model import Transformer
from sparsecod.train.act_ckpt import apply_act_ckpt


@pytest.mark.parametrize("family", ["dense", "gqa", "moe"])
def test_checkpointed_blocks_give_identical_loss_and_gradients(family):
    torch.manual_seed(0)
    plain = Transformer(MODELS[family])
    ckpt = Transformer(MODELS[family])
    ckpt.load_state_dict(plain.state_dict())
    assert apply_act_ckpt(ckpt) == MODELS[family].n_layers
    assert ckpt.state_dict().keys() == plain.state_dict().keys()
    idx = torch.randint(0, MODELS[family].vocab_size, (3, 24))
    outs = []
    for model in (plain, ckpt):
        out = model(idx, idx, capture=True, return_logits=False)
        out.loss.backward()
        outs.append(out)
    torch.testing.assert_close(outs[1].loss, outs[0].loss, rtol=0, atol=1e-6)
    # traces and MoE router statistics are recorded once (not again by the recomputation)
    assert len(outs[1].ctx.traces) == len(outs[0].ctx.traces) == MODELS[family].n_layers
    assert len(outs[1].ctx.moe_aux) == len(outs[0].ctx.moe_aux)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-6, msg=name)


def test_checkpointing_saves_fewer_tensors_for_the_backward():
    """The point of it: far fewer bytes are saved for the backward."""
    torch.manual_seed(0)
    model = Transformer(MODELS["dense"])
    idx = torch.randint(0, 96, (4, 64))

    def saved_bytes() -> int:
        seen = {}

        def pack(t):
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(idx, idx, return_logits=False)
        return sum(seen.values())

    before = saved_bytes()
    apply_act_ckpt(model)
    assert saved_bytes() < 0.6 * before


def test_training_with_act_ckpt_equals_training_without(tmp_path, shard):  # noqa: F811
    """End to end through `train_run`: the same train and variance logs (fp32) with act_ckpt on and off."""
    import dataclasses

    from sparsecod.train import read_log, train_run

    plain = tiny_run(shard, "moe", steps=3, var_every=1, kurtosis_every=1)
    ckpt = dataclasses.replace(plain, train=dataclasses.replace(plain.train, act_ckpt=True))
    train_run(plain, tmp_path / "plain")
    train_run(ckpt, tmp_path / "ckpt")
    for name in ("train_log", "variance_log", "kurtosis_log"):
        a, b = read_log(tmp_path / "plain", name), read_log(tmp_path / "ckpt", name)
        cols = [c for c in a.columns if c != "train_seconds"]
        torch.testing.assert_close(torch.tensor(b[cols].to_numpy()), torch.tensor(a[cols].to_numpy()),
                                   rtol=1e-6, atol=1e-6)
