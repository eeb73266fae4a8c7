"""Activation checkpointing per block (`train.act_ckpt`, issue 16): recompute each block in the backward.

torchtitan's per-block scheme with torch.utils.checkpoint (non-reentrant): a block keeps only its input for the
backward and runs its forward again when the gradient reaches it, so saved activations drop from L blocks' worth
to L block inputs plus one block (sparsecod.train.memory_plan). Results are unchanged: the recomputation is the
same deterministic forward. The block's `forward` is replaced on the instance, so parameter names, the state dict
and `isinstance(block, Block)` (FSDP2 wrapping) stay as they are. The recomputation runs with a scratch
ForwardContext: traces (M1/M2/M10) and MoE router statistics are recorded once, by the original forward.
"""

from __future__ import annotations

import types

from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model.transformer import Block, ForwardContext


def _checkpointed_forward(block: Block, x, ctx: ForwardContext):
    calls = 0

    def run(x_in):
        nonlocal calls
        calls += 1
        if calls == 1:
            return Block.forward(block, x_in, ctx)
        scratch = ForwardContext(cos=ctx.cos, sin=ctx.sin, capture=False, attn_probs=ctx.attn_probs)
        return Block.forward(block, x_in, scratch)

    return checkpoint(run, x, use_reentrant=False)


def apply_act_ckpt(model: nn.Module) -> int:
    """Checkpoint every `Block` of `model` (in place); returns how many blocks were wrapped."""
    n = 0
    for module in model.modules():
        if isinstance(module, Block) and "forward" not in module.__dict__:
            module.forward = types.MethodType(_checkpointed_forward, module)
            n += 1
    return n
