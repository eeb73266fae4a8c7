"""Training instances from a token shard (protocol §1.1): windows, targets, and the batch of every step.

A shard directory holds a flat token stream per split (`train.bin`, `heldout.bin`; read with
`sparsecod.data.shards.open_tokens`). Training instances are the consecutive non-overlapping windows of exactly
T tokens of the train stream (ragged tail dropped), globally shuffled with the run seed.

The global batch of optimizer step s is a pure function of (seed, s): position p = s·B + j
(j < B) of the infinite instance stream is window perm_e[p mod n] with e = p div n and perm_e a
permutation of the n windows drawn from (seed, e), so every epoch visits every window once in a new
order. Rank r of W takes the j-slice [r·B/W, (r+1)·B/W) and splits it into micro-batches; the union
over ranks and micro-batches is the same global batch whatever the device count, and a resumed run
sees exactly the data of an uninterrupted one without any sampler state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from ..config.errors import ConfigError

IGNORE_INDEX = -100


class TokenWindows:
    """Non-overlapping windows of exactly T tokens of a flat stream; the ragged tail is dropped.

    window i is tokens[i·T : (i+1)·T] (`windows(ids)` gathers several); `inputs_targets` turns windows (..., T) into the model
    input (the whole window) and next-token targets (..., T) with the last position ignored, i.e.
    T−1 targets per window and the first token never a target (protocol §1.1).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, name: str = "tokens") -> None:
        self.seq_len = seq_len
        self.n = len(tokens) // seq_len
        if self.n < 1:
            raise ConfigError(
                f"{name} holds {len(tokens)} tokens, fewer than one window of train.seq_len={seq_len}: "
                "tokenize more data or lower train.seq_len"
            )
        self._grid = tokens[: self.n * seq_len].reshape(self.n, seq_len)

    def __len__(self) -> int:
        return self.n

    def windows(self, ids: np.ndarray) -> torch.Tensor:
        """Window ids (...,) -> token ids (..., T) int64."""
        ids = np.asarray(ids)
        return torch.from_numpy(self._grid[ids.reshape(-1)].astype(np.int64)).view(*ids.shape, self.seq_len)

    @staticmethod
    def inputs_targets(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """windows (..., T) -> (inputs (..., T), targets (..., T)): targets[t] = windows[t+1], last = ignore."""
        targets = torch.full_like(windows, IGNORE_INDEX)
        targets[..., :-1] = windows[..., 1:]
        return windows, targets


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The window order of `epoch`: a permutation of range(n) drawn from (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class StepSchedule:
    """Which windows every optimizer step trains on: a pure function of (seed, step)."""

    def __init__(self, n_windows: int, global_batch: int, seed: int) -> None:
        self.n, self.global_batch, self.seed = n_windows, global_batch, seed
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = epoch_permutation(self.seed, epoch, self.n)
        return self._cache[epoch]

    def global_ids(self, step: int) -> np.ndarray:
        """Window ids (B,) of the global batch of `step`."""
        pos = step * self.global_batch + np.arange(self.global_batch, dtype=np.int64)
        epochs, offsets = np.divmod(pos, self.n)
        out = np.empty(self.global_batch, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[offsets[sel]]
        return out

    def rank_ids(self, step: int, rank: int, world: int, micro_batch: int) -> np.ndarray:
        """Window ids (A, micro_batch) of rank `rank` of `world` at `step`, A = B / (world·micro_batch)."""
        per_rank = self.global_batch // world
        ids = self.global_ids(step)[rank * per_rank : (rank + 1) * per_rank]
        return ids.reshape(-1, micro_batch)


class StepBatches(IterableDataset):
    """Yields one item per optimizer step from `start_step` to `end_step` (exclusive), for one rank.

    Item: {"step": int, "idx": (A, micro_batch, T) int64 windows}. The batch is chosen by step, not
    by position in the iteration, so resuming at any step is exact. With W DataLoader workers, worker w yields
    the steps start + w, start + w + W, ...; the DataLoader takes one item from each worker in turn, so the
    steps arrive in order.
    """

    def __init__(
        self, windows: TokenWindows, schedule: StepSchedule, start_step: int, end_step: int,
        rank: int = 0, world: int = 1, micro_batch: int = 1,
    ) -> None:
        self.windows, self.schedule = windows, schedule
        self.start, self.end = start_step, end_step
        self.rank, self.world, self.micro_batch = rank, world, micro_batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + worker, self.end, workers):
            ids = self.schedule.rank_ids(step, self.rank, self.world, self.micro_batch)
            yield {"step": step, "idx": self.windows.windows(ids)}


class HeldoutWindows(Dataset):
    """Rank `rank`'s share of the first `n_windows` held-out windows, in micro-batches (A_r, mb, T).

    Windows are dealt so every rank gets the same count (n_windows rounded down to a multiple of
    world), which keeps collective-using strategies (FSDP) in step.
    """

    def __init__(self, windows: TokenWindows, n_windows: int, micro_batch: int, rank: int = 0, world: int = 1) -> None:
        n = min(n_windows, len(windows)) // world * world
        if n < world:
            raise ConfigError(
                f"train.val_tokens gives {n_windows} held-out window(s) for {world} rank(s): raise train.val_tokens"
            )
        ids = np.arange(rank, n, world)
        self.windows = windows
        self.chunks = [ids[i : i + micro_batch] for i in range(0, len(ids), micro_batch)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.windows.windows(self.chunks[i])
