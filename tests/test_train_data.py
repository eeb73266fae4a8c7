"""Training instances (protocol §1.1): windows, targets, and the batch of every step as a function of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _train_testutil import shard  # noqa: F401  (fixture)
from sparsecod.data.shards import open_tokens
from sparsecod.model.config import ConfigError
from sparsecod.train.data import (
    IGNORE_INDEX, HeldoutWindows, StepBatches, StepSchedule, TokenWindows, epoch_permutation,
)


def test_windows_are_consecutive_non_overlapping_and_drop_the_tail():
    tokens = np.arange(53, dtype=np.uint16)
    w = TokenWindows(tokens, seq_len=10)
    assert len(w) == 5  # 53 // 10; tokens 50..52 dropped
    got = w.windows(np.array([[0, 4], [2, 1]]))
    assert got.shape == (2, 2, 10) and got.dtype == torch.int64
    assert got[0, 1].tolist() == list(range(40, 50))
    assert got[1, 0].tolist() == list(range(20, 30))


def test_targets_are_next_token_inside_the_window():
    win = torch.tensor([[7, 8, 9, 10], [1, 2, 3, 4]])
    inputs, targets = TokenWindows.inputs_targets(win)
    assert torch.equal(inputs, win)
    assert targets.tolist() == [[8, 9, 10, IGNORE_INDEX], [2, 3, 4, IGNORE_INDEX]]
    # T-1 targets per window; the first token of a window is never a target
    assert int((targets != IGNORE_INDEX).sum()) == 2 * 3
    assert 7 not in targets[0].tolist() and 1 not in targets[1].tolist()


def test_too_short_stream_is_a_clear_error():
    with pytest.raises(ConfigError, match="train.seq_len"):
        TokenWindows(np.arange(5, dtype=np.uint16), seq_len=8, name="x/train")


def test_step_batch_is_a_pure_function_of_seed_and_step():
    a, b = StepSchedule(100, 8, seed=6198), StepSchedule(100, 8, seed=6198)
    for step in (0, 5, 12, 30, 7):  # any order, fresh or warm caches
        assert np.array_equal(a.global_ids(step), b.global_ids(step))
    assert not np.array_equal(a.global_ids(0), StepSchedule(100, 8, seed=1).global_ids(0))
    assert not np.array_equal(a.global_ids(0), a.global_ids(1))
    # protocol §1.1: globally shuffled, not stream order
    assert not np.array_equal(a.global_ids(0), np.arange(8))


def test_every_epoch_visits_every_window_once_in_a_new_order():
    n, B = 20, 8  # epochs end mid-batch (20 is not a multiple of 8)
    s = StepSchedule(n, B, seed=3)
    stream = np.concatenate([s.global_ids(step) for step in range(10)])  # 80 = 4 epochs
    epochs = stream.reshape(4, n)
    for e, ids in enumerate(epochs):
        assert sorted(ids) == list(range(n))
        assert np.array_equal(ids, epoch_permutation(3, e, n))
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.parametrize("world,micro", [(1, 8), (1, 2), (2, 4), (2, 1), (4, 2)])
def test_ranks_and_micro_batches_partition_the_global_batch(world, micro):
    s = StepSchedule(50, 8, seed=11)
    for step in (0, 9):
        parts = [s.rank_ids(step, r, world, micro) for r in range(world)]
        assert all(p.shape == (8 // (world * micro), micro) for p in parts)
        assert np.array_equal(np.concatenate([p.reshape(-1) for p in parts]), s.global_ids(step))


def test_step_batches_start_at_any_step(shard):  # noqa: F811
    w = TokenWindows(open_tokens(shard, "train"), 16)
    s = StepSchedule(len(w), 8, seed=5)
    full = list(StepBatches(w, s, 0, 6, micro_batch=4))
    resumed = list(StepBatches(w, s, 4, 6, micro_batch=4))
    assert [b["step"] for b in full] == list(range(6)) and [b["step"] for b in resumed] == [4, 5]
    assert full[4]["idx"].shape == (2, 4, 16)
    for x, y in zip(full[4:], resumed):
        assert torch.equal(x["idx"], y["idx"])
    # the items are the windows of the schedule
    assert torch.equal(full[1]["idx"].reshape(8, 16), w.windows(s.global_ids(1)))


def test_heldout_windows_are_dealt_evenly_over_ranks():
    w = TokenWindows(np.arange(16 * 11, dtype=np.uint16), 16)
    full = HeldoutWindows(w, 7, micro_batch=3)
    assert [len(c) for c in full.chunks] == [3, 3, 1]
    r0, r1 = HeldoutWindows(w, 7, 2, rank=0, world=2), HeldoutWindows(w, 7, 2, rank=1, world=2)
    ids0 = np.concatenate(r0.chunks)
    ids1 = np.concatenate(r1.chunks)
    assert len(ids0) == len(ids1) == 3 and sorted(np.concatenate([ids0, ids1])) == list(range(6))
    assert r0[0][0].tolist() == list(range(16))


@pytest.mark.parametrize("workers", [1, 2])
def test_loader_workers_deliver_every_step_once_in_order(shard, workers):  # noqa: F811
    """train.loader_workers: worker w yields steps start+w, start+w+W, ...; the DataLoader interleaves them in order."""
    from torch.utils.data import DataLoader

    win = TokenWindows(open_tokens(shard, "train"), 16)
    sched = StepSchedule(len(win), 8, seed=3)
    ds = StepBatches(win, sched, start_step=5, end_step=12, rank=1, world=2, micro_batch=2)
    got = list(DataLoader(ds, batch_size=None, num_workers=workers))
    assert [int(b["step"]) for b in got] == list(range(5, 12))
    for b, want in zip(got, ds):
        assert torch.equal(b["idx"], want["idx"])
