"""The one loop of the intervention metrics: causal (M4), permutation (M5) and usefulness (M6) (protocol §2).

Each of them runs the same skeleton over the ANALYSIS_SET windows (N, T), micro-batch by micro-batch:
the baseline forward caches x_0..x_L (`states.residual_states`), then every intervened forward (a `Run`: the
model's blocks 0..start−1 unchanged, so it restarts from the cached x_start, then its own block sequence) is
evaluated, the runs sharing batched block calls (`states.run_chains`, at most `chain_tokens` tokens at once).
A metric only says which runs it makes and what it reads from them: `on_batch` sees the baseline (`Batch`),
`on_step(batch, run, k, x_in, x_out)` every block application of a run, `on_done(batch, run, x_last)` its last
state. `from_cache=False` recomputes every run from the embedding, one at a time (test oracle, bench baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from tqdm.auto import tqdm

from ..model.transformer import Transformer
from .states import Chain, autocast, micro_batches, model_device, residual_states, run_chains


@dataclass(frozen=True)
class Run:
    """One intervened forward of every window.

    start: the model's blocks 0..start−1 run unchanged, so the run begins at the baseline's x_start (B, T, d);
    blocks: the blocks it applies from there, in order; depth: the depth position of blocks[0] (runs applying
    the same module at the same depth share one call; default `start`); x: a state (broadcastable to (B, T, d))
    that replaces x_start (usefulness' ceiling: the fit's mean target).
    """

    start: int
    blocks: Sequence[nn.Module]
    depth: int | None = None
    x: torch.Tensor | None = None

    def chain(self, xs: list[torch.Tensor]) -> Chain:
        x = xs[self.start] if self.x is None else self.x.expand_as(xs[self.start])
        return Chain(x, self.blocks, self.start if self.depth is None else self.depth)


@dataclass
class Batch:
    """One micro-batch: windows idx (B, T) on the model's device, their rows in the (N, ...) per-window arrays,
    and the baseline states xs = x_0..x_L (L+1 tensors (B, T, d))."""

    idx: torch.Tensor
    rows: slice
    xs: list[torch.Tensor]

    @cached_property
    def deltas(self) -> list[torch.Tensor]:
        """The baseline's updates Δ_l = x_{l+1} − x_l (L tensors (B, T, d))."""
        return [self.xs[l + 1] - self.xs[l] for l in range(len(self.xs) - 1)]


@torch.no_grad()
def intervene(
    model: Transformer,
    windows: torch.Tensor,
    runs: Sequence[Run],
    micro_batch: int = 4,
    bf16: bool = False,
    chain_tokens: int = 4096,
    *,
    on_batch: Callable[[Batch], None] | None = None,
    on_step: Callable[[Batch, int, int, torch.Tensor, torch.Tensor], None] | None = None,
    on_done: Callable[[Batch, int, torch.Tensor], None] | None = None,
    from_cache: bool = True,
    desc: str = "",
    progress: bool = False,
) -> None:
    """Run the skeleton of the module docstring over windows (N, T); the callbacks collect the metric."""
    device = model_device(model)
    blocks = list(model.blocks)
    start = 0
    with autocast(device, bf16):
        for idx in tqdm(list(micro_batches(windows, micro_batch)), desc=desc, disable=not progress):
            idx = idx.to(device)
            ctx = model.context(idx.shape[1], device)
            xs = residual_states(model, model.embed(idx), blocks, ctx)
            batch = Batch(idx, slice(start, start + idx.shape[0]), xs)
            start += idx.shape[0]
            if on_batch is not None:
                on_batch(batch)
            step = None if on_step is None else lambda c, k, x_in, x_out: on_step(batch, c, k, x_in, x_out)
            done = None if on_done is None else lambda c, x_last: on_done(batch, c, x_last)
            if from_cache:
                run_chains(model, [run.chain(batch.xs) for run in runs], ctx, chain_tokens, step, done)
                continue
            for c, run in enumerate(runs):
                if run.x is None:  # from the embedding through the unchanged prefix
                    states = residual_states(model, model.embed(idx), blocks[: run.start] + list(run.blocks), ctx)
                    states = states[run.start :]
                else:
                    states = residual_states(model, run.x.expand_as(batch.xs[run.start]), run.blocks, ctx)
                for k in range(len(states) - 1):
                    if step is not None:
                        step(c, k, states[k], states[k + 1])
                if done is not None:
                    done(c, states[-1])
