"""Which parameters take weight decay (protocol §1.5): one rule for the optimizer (train.optim) and for M7's
decayed / non-decayed subsets (metrics.weight_sparsity), defined below both (issue 17.4).

Decay applies to every matrix: all Linear weights (QKV, attention output, gate/up/down, LM head), the MoE router
and the stacked expert tensors. The token embedding and the RMSNorm gains are not decayed.
"""

from __future__ import annotations

from torch import nn

from .transformer import RMSNorm


def decay_split(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """([(name, p) decayed], [(name, p) not decayed]) over the trainable parameters, in `named_parameters` order.

    No decay: the parameters of nn.Embedding and RMSNorm modules. Decay: every other parameter (the matrices of
    Linear layers, the router and the stacked experts). Decided by module type, not by tensor rank, so it also
    holds for FSDP's flattened shards. A bias (the paper has none) raises, so a new module type never slips into
    a group silently.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, (nn.Embedding, RMSNorm)):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias"):
            raise ValueError(f"parameter {name}: the paper's models have no biases (protocol §1.2); no decay group for it")
        (no_decay if id(p) in no_decay_ids else decay).append((name, p))
    return decay, no_decay
