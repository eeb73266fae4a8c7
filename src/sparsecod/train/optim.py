"""AdamW with the paper's weight-decay groups and LR schedule (spec §1.5).

Decay applies to every matrix: all Linear weights (QKV, attention output, gate/up/down, LM head),
the MoE router and the stacked expert tensors. The token embedding and the RMSNorm gains are not
decayed. The schedule is a linear warmup 0 -> peak over `warmup_steps`, then a cosine from peak to
`min_lr_ratio`·peak that ends exactly at update `steps`, constant afterwards.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..model.transformer import RMSNorm, Transformer


def param_groups(model: Transformer, weight_decay: float) -> list[dict]:
    """[{"params", "names", "weight_decay"=λ}, {"params", "names", "weight_decay"=0}] (spec §1.5).

    No decay: the parameters of nn.Embedding and RMSNorm modules. Decay: every other parameter (the
    matrices of Linear layers, the router and the stacked experts). Decided by module type, not by
    tensor rank, so it also holds for FSDP's flattened shards. A bias (the paper has none) raises, so
    a new module type never slips into a group silently.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, (nn.Embedding, RMSNorm)):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias"):
            raise ValueError(f"parameter {name}: the paper's models have no biases (spec §1.2); no decay group for it")
        group = no_decay if id(p) in no_decay_ids else decay
        group[0].append(name)
        group[1].append(p)
    return [
        {"params": decay[1], "names": decay[0], "weight_decay": weight_decay},
        {"params": no_decay[1], "names": no_decay[0], "weight_decay": 0.0},
    ]


def lr_factor(n: int, cfg: TrainConfig) -> float:
    """LR multiplier after n completed updates; update s (0-based) uses lr·lr_factor(s + 1).

    0 at n = 0, n / warmup_steps during warmup, 1 at n = warmup_steps, cosine down to min_lr_ratio at
    n = steps (the last update of the schedule), min_lr_ratio afterwards.
    """
    w, total, lo = cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio
    if n < w:
        return n / w
    if n >= total:
        return lo
    progress = (n - w) / (total - w)
    return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: Transformer, cfg: TrainConfig) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW(β1, β2, eps; PyTorch decoupled decay) over `param_groups`, and the per-update LambdaLR.

    Fused (one kernel for all parameters) when every parameter is on CUDA; PyTorch's default (foreach) otherwise.
    """
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, cfg.weight_decay)]
    fused = all(p.is_cuda for g in groups for p in g["params"]) or None
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda last: lr_factor(last + 1, cfg))
    return opt, sched
