"""Residual-stream states and losses through the model's one intervention mechanism (protocol M3-M6, M10, M11).

Everything goes through `Transformer.embed`, `Transformer.run_blocks(x, blocks, ctx)` and
`Transformer.head`: a metric passes its own block sequence (a block omitted, two swapped, an
`AffineBlock` in place of one) and may start from a cached state x_s instead of the embedding, which
is exact because blocks only see their input and the RoPE tables of the context.
Shapes: B windows, T positions, d width; x_l (B, T, d) is the input of block l, x_L the pre-norm output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.transformer import ForwardContext, Transformer


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast when `bf16` (parity with the released code), else full fp32 (protocol Q12)."""
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


@dataclass
class Chain:
    """One intervened forward: start state x (B, T, d), then `blocks` in order; `offset` = the depth position of
    its first block (chains that apply the same module at the same position can share one batched call)."""

    x: torch.Tensor
    blocks: Sequence[nn.Module]
    offset: int = 0


def run_chains(
    model: Transformer,
    chains: Sequence[Chain],
    ctx: ForwardContext,
    max_tokens: int = 0,
    on_step: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
    on_done: Callable[[int, torch.Tensor], None] | None = None,
) -> None:
    """Evaluate every chain depth-position by depth-position; on_done(chain index, final state) as each ends.

    Chains are taken in order in groups of at most `max_tokens` tokens (at least one chain per group; 0 = one
    chain at a time). Within a group, at each depth position the chains whose next block is the same module
    are concatenated along the batch axis and run as one call of `model.run_blocks`: blocks treat sequences
    independently (attention within a window, token-wise dropless MoE), so this is the same computation in
    fewer, larger kernels. on_step(chain index, step within the chain, block input, block output) sees
    every block application. Memory: the states of one group (≈ max_tokens·d) plus one batched block call.
    """
    groups: list[list[int]] = []
    tokens = 0
    for c, chain in enumerate(chains):
        n = chain.x.shape[0] * chain.x.shape[1]
        if not groups or tokens + n > max_tokens:
            groups.append([])
            tokens = 0
        groups[-1].append(c)
        tokens += n
    for group in groups:
        states = {c: chains[c].x for c in group}
        first = min(chains[c].offset for c in group)
        last = max(chains[c].offset + len(chains[c].blocks) for c in group)
        for pos in range(first, last):
            buckets: dict[int, list[int]] = {}
            for c in group:
                k = pos - chains[c].offset
                if 0 <= k < len(chains[c].blocks):
                    buckets.setdefault(id(chains[c].blocks[k]), []).append(c)
            for members in buckets.values():
                block = chains[members[0]].blocks[pos - chains[members[0]].offset]
                x_in = [states[c] for c in members]
                out = model.run_blocks(torch.cat(x_in) if len(x_in) > 1 else x_in[0], [block], ctx)
                for c, xi, xo in zip(members, x_in, out.split([x.shape[0] for x in x_in])):
                    if on_step is not None:
                        on_step(c, pos - chains[c].offset, xi, xo)
                    if pos == chains[c].offset + len(chains[c].blocks) - 1:  # the chain's last block
                        del states[c]
                        if on_done is not None:
                            on_done(c, xo)
                    else:
                        states[c] = xo
        for c in list(states):  # chains without blocks
            if on_done is not None:
                on_done(c, states.pop(c))


def ce_sum(model: Transformer, x_last: torch.Tensor, idx: torch.Tensor) -> tuple[float, int]:
    """(Σ next-token cross-entropy, #targets) of windows idx (B, T) given the last residual state (B, T, d).

    Targets are idx[:, 1:], predicted from positions 0..T−2: T−1 targets per window (protocol §1.1, M5).
    """
    logits = model.head(x_last)[:, :-1]
    targets = idx[:, 1:].to(logits.device)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="sum")
    return float(loss.detach()), targets.numel()


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


def ce_per_window(model: Transformer, x_last: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Σ next-token cross-entropy of each window (B,) (float64, on CPU): ce_sum split by window, for the window
    bootstrap of M5/M6 (each window has the same T−1 targets)."""
    logits = model.head(x_last)[:, :-1]
    targets = idx[:, 1:].to(logits.device)
    loss = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, T−1)
    return loss.sum(dim=1).detach().double().cpu()
