"""Callbacks of a training run: log flushing and throughput, plain progress lines, periodic `last.ckpt` checkpoints."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .loggers import ParquetLogger

log = logging.getLogger("sparsecod.train")


class RunLogs(Callback):
    """Drains the module's `log_rows` into the run's loggers (rank 0) and tracks train time and throughput.

    The rows go to the ParquetLogger (loggers.py), which is saved whenever a checkpoint is saved (periodic,
    final, or Lightning's SLURM requeue checkpoint), after validation, on an exception, when the run stops and at
    the end, so the rows of every step up to any checkpoint are on disk. Every train_log row also goes to the
    extra Lightning loggers (train.loggers) with the step's tokens/s and MFU (sparsecod.model.flops, against
    `peak_flops` per device; None = not computed). Train time (seconds spent in training steps, summed over
    resumed segments) is part of the checkpoint state.
    """

    SCALARS = ("loss", "ce", "aux", "lr", "grad_norm", "tokens_per_s", "mfu")

    def __init__(self, run_dir: str | Path, tokens_per_step: int, flops_per_token: float = 0.0,
                 peak_flops: float | None = None) -> None:
        self.parquet = ParquetLogger(run_dir)
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self.train_seconds = 0.0
        self.last: dict[str, float] = {}  # the latest step's row with tokens_per_s and mfu (progress output)
        self._t0: float | None = None

    def mfu(self, tokens_per_s: float, world: int) -> float | None:
        if not self.peak_flops or not self.flops_per_token:
            return None
        return tokens_per_s * self.flops_per_token / (self.peak_flops * world)

    def _complete(self, row: dict, elapsed: float = 0.0) -> None:
        """Add the callback's columns of a train_log row: tokens seen after the step and train time so far."""
        row["tokens"] = (row["step"] + 1) * self.tokens_per_step
        row["train_seconds"] = self.train_seconds + elapsed

    def _drain(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint in the middle of a step (Lightning's SLURM handler runs in the signal handler, right after
        # the deferred optimizer update) drains the step's row before on_train_batch_end completed it.
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        for row in pl_module.log_rows["train_log"]:
            if "tokens" not in row:
                self._complete(row, elapsed)
        for name, rows in pl_module.log_rows.items():
            if trainer.is_global_zero:
                self.parquet.log_table(name, rows)
            pl_module.log_rows[name] = []

    def flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drain(trainer, pl_module)
        if trainer.is_global_zero:
            self.parquet.save()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = 0.0
        if self._t0 is not None:
            seconds = time.perf_counter() - self._t0
            self.train_seconds += seconds
            self._t0 = None
        for row in pl_module.log_rows["train_log"]:
            self._complete(row)
            tokens_per_s = self.tokens_per_step / seconds if seconds > 0 else math.nan
            self.last = {**row, "tokens_per_s": tokens_per_s, "mfu": self.mfu(tokens_per_s, trainer.world_size)}
            metrics = {k: float(v) for k, v in self.last.items() if k in self.SCALARS and v is not None}
            for logger in trainer.loggers:
                if logger is not self.parquet:
                    logger.log_metrics(metrics, step=row["step"])
        if self.last:
            pl_module.log("tokens/s", self.last["tokens_per_s"], prog_bar=True, logger=False)
            if self.last["mfu"] is not None:
                pl_module.log("mfu", self.last["mfu"], prog_bar=True, logger=False)
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


class ProgressLines(Callback):
    """Progress as plain log lines every `every` steps (rank 0), for logs without a terminal (Snakemake, Slurm):
    `step 100/38147 loss 3.2104 lr 1.00e-03 tokens/s 45.1k mfu 41.0%`. Reads the latest row of `RunLogs`."""

    def __init__(self, logs: RunLogs, every: int, total: int) -> None:
        self.logs, self.every, self.total = logs, max(1, every), total

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row = self.logs.last
        step = trainer.global_step
        if not trainer.is_global_zero or not row or (step % self.every and step != self.total):
            return
        mfu = f" mfu {row['mfu']:.1%}" if row.get("mfu") is not None else ""
        log.info("step %d/%d loss %.4f lr %.2e tokens/s %s%s", step, self.total, row["loss"], row["lr"],
                 _si(row["tokens_per_s"]), mfu)


def _si(x: float) -> str:
    if not math.isfinite(x):
        return "nan"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


class AtomicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that only keeps `<dirpath>/last.ckpt`, every `every_n_train_steps`.

    Written atomically by the run's CheckpointIO plugin (checkpoint_io.AtomicCheckpointIO), like every checkpoint.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int) -> None:
        super().__init__(
            dirpath=str(dirpath), save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps,
            enable_version_counter=False, save_on_exception=False,
        )
