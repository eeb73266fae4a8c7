"""AdamW with the paper's weight-decay groups and LR schedule (protocol §1.5).

Decay applies to every matrix (the rule: `sparsecod.model.decay`); the embedding and the RMSNorm gains
are not decayed. The schedule is a linear warmup 0 -> peak over `warmup_steps`, then a cosine from peak to
`min_lr_ratio`·peak that ends exactly at update `steps`, constant afterwards.
"""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..model.decay import decay_split
from ..model.transformer import Transformer


def param_groups(model: Transformer, weight_decay: float) -> list[dict]:
    """[{"params", "names", "weight_decay"=λ}, {"params", "names", "weight_decay"=0}] (protocol §1.5; the rule is
    `sparsecod.model.decay.decay_split`)."""
    return [{"params": [p for _, p in group], "names": [n for n, _ in group], "weight_decay": wd}
            for group, wd in zip(decay_split(model), (weight_decay, 0.0))]


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
