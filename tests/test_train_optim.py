"""Optimizer of protocol §1.5: AdamW decay groups (matrices only) and the warmup + cosine LR schedule."""

from __future__ import annotations

import math

import pytest
import torch

from _train_testutil import MODELS
from sparsecod.config import TrainConfig
from sparsecod.model import Transformer
from sparsecod.model.config import ConfigError
from sparsecod.train.optim import build_optimizer, lr_factor, param_groups


def _groups(family):
    torch.manual_seed(0)
    model = Transformer(MODELS[family])
    decay, no_decay = param_groups(model, 0.1)
    return model, decay, no_decay


def test_dense_decay_groups_are_exactly_the_matrices():
    model, decay, no_decay = _groups("gqa")
    assert set(no_decay["names"]) == {
        "wte.weight", "final_norm.weight",
        "blocks.0.attn_norm.weight", "blocks.0.ffn_norm.weight", "blocks.1.attn_norm.weight", "blocks.1.ffn_norm.weight",
    }
    per_block = ["attn.qkv.weight", "attn.out.weight", "ffn.gate.weight", "ffn.up.weight", "ffn.down.weight"]
    assert set(decay["names"]) == {f"blocks.{i}.{n}" for i in range(2) for n in per_block} | {"lm_head.weight"}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_moe_decay_groups_include_router_experts_and_shared_expert():
    _, decay, no_decay = _groups("moe")
    per_block = [
        "attn.qkv.weight", "attn.out.weight", "ffn.router.weight", "ffn.experts.gate", "ffn.experts.up",
        "ffn.experts.down", "ffn.shared.gate.weight", "ffn.shared.up.weight", "ffn.shared.down.weight",
    ]
    assert set(decay["names"]) == {f"blocks.{i}.{n}" for i in range(2) for n in per_block} | {"lm_head.weight"}
    assert "wte.weight" in no_decay["names"] and len(no_decay["names"]) == 6
    assert all(p.ndim == 3 for n, p in zip(decay["names"], decay["params"]) if ".experts." in n)


def test_a_bias_would_not_slip_into_a_group_silently():
    model = Transformer(MODELS["dense"])
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.cfg.padded_vocab))
    with pytest.raises(ValueError, match="lm_head.bias"):
        param_groups(model, 0.1)


def test_adamw_decays_only_the_decay_group():
    """With zero gradients AdamW's update is pure decoupled decay θ ← θ(1 − η λ)."""
    cfg = TrainConfig(steps=10, warmup_steps=0, lr=0.5, weight_decay=0.1, min_lr_ratio=1.0)
    torch.manual_seed(0)
    model = Transformer(MODELS["moe"])
    opt, sched = build_optimizer(model, cfg)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = 1.0 if ("norm" in n or n == "wte.weight") else 1 - 0.5 * 0.1
        torch.testing.assert_close(p.detach(), before[n] * factor, rtol=0, atol=1e-7, msg=n)


def test_lr_schedule_values():
    cfg = TrainConfig(steps=1000, warmup_steps=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == 0.0
    assert lr_factor(50, cfg) == pytest.approx(0.5)
    assert lr_factor(100, cfg) == pytest.approx(1.0)
    assert lr_factor(550, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # cosine midpoint
    assert lr_factor(1000, cfg) == pytest.approx(0.1)  # ends exactly at the last step
    assert lr_factor(5000, cfg) == pytest.approx(0.1)  # constant afterwards
    mid = lr_factor(325, cfg)
    assert mid == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.25)))


def test_lambda_lr_uses_the_factor_after_each_update():
    """Update s (0-based) runs at lr·lr_factor(s+1): the first update is not wasted at lr 0, the last is at 0.1·lr."""
    cfg = TrainConfig(steps=10, warmup_steps=4, lr=2.0, min_lr_ratio=0.1)
    model = Transformer(MODELS["dense"])
    opt, sched = build_optimizer(model, cfg)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[1]["lr"] == lrs[-1]
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[3] == pytest.approx(2.0)
    assert lrs[9] == pytest.approx(0.2) and lrs[11] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(lrs[3:9], lrs[4:10]))


def test_schedule_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.warmup_steps"):
        TrainConfig(steps=10, warmup_steps=11)
    with pytest.raises(ConfigError, match="train.min_lr_ratio"):
        TrainConfig(min_lr_ratio=1.5)
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig(precision="16-mixed")
    with pytest.raises(ConfigError, match="train.val_tokens"):
        TrainConfig(val_every=10, val_tokens=0)


def test_adamw_is_fused_only_when_every_parameter_is_on_cuda():
    opt, _ = build_optimizer(Transformer(MODELS["dense"]), TrainConfig(steps=10, warmup_steps=1))
    assert not opt.defaults["fused"]  # CPU: PyTorch's default (foreach) implementation


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"compile": "yes"}, "train.compile"), ({"loader_workers": -1}, "train.loader_workers"),
    ({"strategy": "fsdp"}, "train.strategy"),
])
def test_parallel_and_loader_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TrainConfig(**kwargs)
