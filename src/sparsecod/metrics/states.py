"""Residual-stream states and losses through the model's one intervention mechanism (spec M3-M6, M10, M11).

Everything goes through `Transformer.embed`, `Transformer.run_blocks(x, blocks, ctx)` and
`Transformer.head`: a metric passes its own block sequence (a block omitted, two swapped, an
`AffineBlock` in place of one) and may start from a cached state x_s instead of the embedding, which
is exact because blocks only see their input and the RoPE tables of the context.
Shapes: B windows, T positions, d width; x_l (B, T, d) is the input of block l, x_L the pre-norm output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model.transformer import ForwardContext, Transformer


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when `bf16` (parity with the released code), else full fp32 (spec Q12)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def micro_batches(windows: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """(N, T) -> consecutive (≤size, T) slices."""
    for i in range(0, windows.shape[0], size):
        yield windows[i : i + size]


def residual_states(
    model: Transformer, x: torch.Tensor, blocks: Sequence[nn.Module], ctx: ForwardContext
) -> list[torch.Tensor]:
    """[x, block_0(x), block_1(block_0(x)), ...]: the residual stream before and after each of `blocks`.

    With x = x_0 and blocks = model.blocks this is x_0..x_L (L+1 tensors (B, T, d)).
    """
    states = [x]
    for block in blocks:
        states.append(model.run_blocks(states[-1], [block], ctx))
    return states


def ce_sum(model: Transformer, x_last: torch.Tensor, idx: torch.Tensor) -> tuple[float, int]:
    """(Σ next-token cross-entropy, #targets) of windows idx (B, T) given the last residual state (B, T, d).

    Targets are idx[:, 1:], predicted from positions 0..T−2: T−1 targets per window (spec §1.1, M5).
    """
    logits = model.head(x_last)[:, :-1]
    targets = idx[:, 1:].to(logits.device)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
    return float(loss), targets.numel()


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Parameters without requires_grad for the duration (only input gradients are ever needed)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
