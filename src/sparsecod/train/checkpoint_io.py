"""Atomic checkpoint writes through Lightning's extension point, `CheckpointIO` (periodic, final, Slurm requeue).

Every checkpoint a run writes goes through `trainer.save_checkpoint` -> the strategy -> this plugin: the periodic
`last.ckpt` of ModelCheckpoint, the final `last.ckpt` of run.py and the `hpc_ckpt_<n>.ckpt` that Lightning's SLURM
signal handler writes before `scontrol requeue`. A kill at any moment leaves either the previous checkpoint or the
new one, never a torn file:

- single file (one device, DDP; rank 0 only): written to `.<name>.tmp`, flushed to disk, then `os.replace`d.
- sharded (FSDP2, torch.distributed.checkpoint; all ranks, `save_sharded`): every rank writes its shard into a
  fresh directory `.shards/<name>.<step>-<nonce>/`; after a barrier rank 0 adds `meta.pt` (the non-tensor state:
  loops, callbacks, schedulers) and points the symlink `<name>` at that directory with one `os.replace`; the
  directory it pointed at before (and any left by a killed write) is removed afterwards. The directories live in
  `.shards/` so that Lightning's scan for `hpc_ckpt_<n>` names sees only the symlinks.

`saved_step(path)` is the step of the last checkpoint this plugin wrote at `path` (rank 0 knows it for single files,
every rank for sharded ones).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

META_FILE = "meta.pt"  # Lightning's name for the non-tensor part of a sharded checkpoint (its loader reads it)
SHARDS_DIR = ".shards"  # next to the checkpoints: the directories their symlinks point to


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose writes are atomic (module docstring); also writes sharded checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self._saved: dict[str, int] = {}

    def saved_step(self, path: str | os.PathLike) -> int | None:
        return self._saved.get(str(Path(path).absolute()))

    # --- single file (rank 0) ------------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        target = _link_target(path)
        os.replace(tmp, path)  # also replaces a symlink left by a sharded checkpoint
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        _fsync_dir(path.parent)
        self._saved[str(path.absolute())] = int(checkpoint.get("global_step", -1))

    # --- sharded (all ranks) -------------------------------------------------------------------------------------
    def save_sharded(self, checkpoint: dict[str, Any], shards: dict[str, Any], path, *, rank: int, barrier) -> None:
        """Write `shards` (DTensor state dicts) with torch.distributed.checkpoint and `checkpoint` as meta.pt.

        Collective: every rank calls it with the same `path`; `barrier()` synchronises the ranks.
        """
        from torch.distributed.checkpoint import save as dcp_save

        path = Path(path)
        step = int(checkpoint.get("global_step", -1))
        nonce = uuid.uuid4().hex[:8] if rank == 0 else None
        nonce = _broadcast(nonce)
        target = path.parent / SHARDS_DIR / f"{path.name}.{step}-{nonce}"
        dcp_save(shards, checkpoint_id=target)
        barrier()
        if rank == 0:
            meta_tmp = target / f".{META_FILE}.tmp"
            with open(meta_tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(meta_tmp, target / META_FILE)
            _fsync_dir(target)
            if path.is_dir() and not path.is_symlink():  # a plain directory in the way (not written by this plugin)
                shutil.rmtree(path)
            link_tmp = path.with_name(f".{path.name}.link.tmp")
            link_tmp.unlink(missing_ok=True)
            link_tmp.symlink_to(Path(SHARDS_DIR) / target.name)
            os.replace(link_tmp, path)
            _fsync_dir(path.parent)
            for stale in target.parent.glob(f"{path.name}.*-*"):  # the previous target, and writes cut short
                if stale != target and stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
        barrier()
        self._saved[str(path.absolute())] = step

    def remove_checkpoint(self, path) -> None:
        """Remove a checkpoint file, or a sharded checkpoint's symlink and the directory it points to."""
        path = Path(path)
        target = _link_target(path)
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        self._saved.pop(str(path.absolute()), None)


def _link_target(path: Path) -> Path | None:
    """The directory a sharded checkpoint's symlink points to (None for files and missing paths)."""
    if not path.is_symlink():
        return None
    return path.parent / os.readlink(path)


def _broadcast(obj):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def checkpoint_step(path: Path) -> int | None:
    """The optimizer steps done in a checkpoint (file or sharded directory); None if it cannot be read."""
    try:
        file = path / META_FILE if path.is_dir() else path
        return int(torch.load(file, map_location="cpu", mmap=True, weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 - "cannot be read" is the answer
        return None
