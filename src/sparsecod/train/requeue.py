"""Checkpoint-and-requeue on Slurm's warning signal for multi-process training (issue 16; docs/slurm.md).

Lightning's own SLURM handler saves a checkpoint from inside the signal handler of each process. With several
processes the signal reaches them at different points of a step; a rank that is still inside a collective (the
gradient all-reduce of the last micro-batch) then never meets the barrier of a rank that is already saving, and
the job hangs until its time limit. Here the handler only notes the signal; after every optimizer step all ranks
sum their notes (one all-reduce of one number), so every rank sees the request at the same step, saves the same
`checkpoints/hpc_ckpt_<n>.ckpt` (the name Lightning uses, which `pick_checkpoint` resumes from) and rank 0 runs
`scontrol requeue <job id>`. Training goes on until Slurm ends the job; the requeued job resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


log = logging.getLogger("sparsecod.train")
_HPC = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes: <array job>_<task> for array jobs, else SLURM_JOB_ID."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


class SyncedRequeue(Callback):
    """On `requeue_signal` (SIGURG): after the step all ranks agree on, save hpc_ckpt_<n>.ckpt and requeue."""

    def __init__(self, ckpt_dir: str | Path, requeue_signal: int) -> None:
        self.ckpt_dir, self.signum = Path(ckpt_dir), requeue_signal
        self.requested = False
        self._old = None

    def _note(self, signum, frame) -> None:
        self.requested = True

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(self.signum, self._note)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._old is not None:
            signal.signal(self.signum, self._old)
            self._old = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flag = torch.tensor([1.0 if self.requested else 0.0], device=pl_module.device)
        if float(trainer.strategy.reduce(flag, reduce_op="sum")) == 0:
            return
        self.requested = False
        seqs = [int(m.group(1)) for p in self.ckpt_dir.glob("hpc_ckpt_*.ckpt") if (m := _HPC.search(p.name))]
        n = trainer.strategy.broadcast(max(seqs, default=0) + 1, src=0)
        path = self.ckpt_dir / f"hpc_ckpt_{n}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # atomic through the run's CheckpointIO plugin
        if trainer.is_global_zero:
            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True, check=False)
            log.info("requeue signal at step %d: saved %s; scontrol requeue %s -> exit %d %s", trainer.global_step,
                     path, job, result.returncode, result.stderr.strip())


def requeue_callbacks(ckpt_dir: Path, requeue_signal: int | None, world_size: int) -> list[Callback]:
    """[SyncedRequeue] for a multi-process run under Slurm (see `run._cluster_plugins`), else []."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if requeue_signal is None or world_size < 2 or not SLURMEnvironment.detect():
        return []
    return [SyncedRequeue(ckpt_dir, requeue_signal)]
