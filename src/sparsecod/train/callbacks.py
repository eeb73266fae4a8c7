"""Callbacks of a training run: append-only log flushing and periodic `last.ckpt` checkpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .logs import LOG_NAMES, LogWriter


class RunLogs(Callback):
    """Drains the module's `log_rows` into the run's append-only logs (rank 0) and tracks train time.

    Flushes whenever a checkpoint is saved (periodic, final, or Lightning's SLURM requeue checkpoint),
    after validation, on an exception, when the run stops and at the end, so the rows of every step
    up to any checkpoint are on disk. Train time (seconds spent in training steps, summed over
    resumed segments) is part of the checkpoint state.
    """

    def __init__(self, run_dir: str | Path, tokens_per_step: int) -> None:
        self.writers = {name: LogWriter(run_dir, name) for name in LOG_NAMES}
        self.tokens_per_step = tokens_per_step
        self.train_seconds = 0.0
        self._t0: float | None = None

    def _drain(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, rows in pl_module.log_rows.items():
            if trainer.is_global_zero:
                self.writers[name].append(rows)
            pl_module.log_rows[name] = []

    def flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drain(trainer, pl_module)
        if trainer.is_global_zero:
            for writer in self.writers.values():
                writer.flush()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0
            self._t0 = None
        for row in pl_module.log_rows["train_log"]:
            row["tokens"] = (row["step"] + 1) * self.tokens_per_step
            row["train_seconds"] = self.train_seconds
        self._drain(trainer, pl_module)
        if trainer.should_stop:
            self.flush(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.flush(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.flush(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.flush(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.flush(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))


class AtomicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that only keeps `<dirpath>/last.ckpt`, every `every_n_train_steps`.

    Written atomically by the run's CheckpointIO plugin (checkpoint_io.AtomicCheckpointIO), like every checkpoint.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int) -> None:
        super().__init__(
            dirpath=str(dirpath), save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps,
            enable_version_counter=False, save_on_exception=False,
        )
