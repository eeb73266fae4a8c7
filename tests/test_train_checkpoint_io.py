"""Atomic checkpoint writes through Lightning's CheckpointIO extension point (train/checkpoint_io.py, issue 17.2)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from _train_testutil import one_thread, shard, tiny_run  # noqa: F401  (fixtures)
from sparsecod.train import train_run
from sparsecod.train.checkpoint_io import META_FILE, AtomicCheckpointIO, checkpoint_step

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("killed mid-write")


def test_a_failed_single_file_write_keeps_the_previous_checkpoint(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "w": torch.ones(4)}, path)
    with pytest.raises(RuntimeError, match="mid-write"):
        io.save_checkpoint({"global_step": 4, "w": torch.zeros(4), "x": _Unpicklable()}, path)
    assert checkpoint_step(path) == 3 and io.saved_step(path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_sharded_checkpoint_swaps_a_symlink_and_cleans_up(tmp_path):
    """One process (no process group): DCP writes, meta.pt, symlink swap; a leftover of a killed write is removed."""
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    (tmp_path / ".shards" / "last.ckpt.9-deadbeef").mkdir(parents=True)  # a write cut short: never pointed to
    for step in (4, 8):
        shards = {"state_dict": {"w": torch.full((3,), float(step))}}
        io.save_sharded({"global_step": step}, shards, path, rank=0, barrier=lambda: None)
        assert path.is_symlink() and (path / META_FILE).is_file() and (path / ".metadata").is_file()
        assert checkpoint_step(path) == step and io.saved_step(path) == step
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shards", "last.ckpt"]
    assert [f".shards/{p.name}" for p in (tmp_path / ".shards").iterdir()] == [os.readlink(path)]
    from torch.distributed.checkpoint import load

    state = {"state_dict": {"w": torch.zeros(3)}}
    load(state, checkpoint_id=path)
    assert torch.equal(state["state_dict"]["w"], torch.full((3,), 8.0))
    io.remove_checkpoint(path)
    assert [p.name for p in tmp_path.iterdir()] == [".shards"] and not any((tmp_path / ".shards").iterdir())


def test_a_single_file_replaces_a_sharded_checkpoint(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_sharded({"global_step": 2}, {"state_dict": {"w": torch.ones(2)}}, path, rank=0, barrier=lambda: None)
    io.save_checkpoint({"global_step": 5}, path)
    assert path.is_file() and not path.is_symlink() and checkpoint_step(path) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shards", "last.ckpt"]
    assert not any((tmp_path / ".shards").iterdir())


class _SeeIO(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.io = trainer.strategy.checkpoint_io


@pytest.mark.integration
def test_every_training_checkpoint_goes_through_the_plugin(tmp_path, shard):  # noqa: F811
    """Periodic (step 3, 6) and final (step 7) last.ckpt through AtomicCheckpointIO; Lightning's SLURM requeue
    handler saves with the same trainer.save_checkpoint (test_train_run's requeue test resumes from one)."""
    seen = _SeeIO()
    train_run(tiny_run(shard, "dense", steps=7, ckpt_every=3), tmp_path / "r", callbacks=[seen])
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    assert isinstance(seen.io, AtomicCheckpointIO) and seen.io.saved_step(last) == 7 == checkpoint_step(last)
    assert not list(Path(last.parent).glob(".*.tmp"))


def test_lightning_numbers_the_next_requeue_checkpoint_past_a_sharded_one(tmp_path):
    """Lightning names requeue checkpoints by scanning for `hpc_ckpt_<n>`: the shard directories must not count."""
    from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

    io = AtomicCheckpointIO()
    io.save_sharded({"global_step": 57}, {"state_dict": {"w": torch.ones(2)}}, tmp_path / "hpc_ckpt_1.ckpt", rank=0,
                    barrier=lambda: None)
    assert Path(_CheckpointConnector(None).hpc_save_path(tmp_path)).name == "hpc_ckpt_2.ckpt"
