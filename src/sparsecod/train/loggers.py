"""Lightning loggers of a training run (issue 17): the parquet logs as a `Logger`, plus csv/tensorboard/wandb.

`ParquetLogger` owns the run's append-only parquet logs (logs.py): tables of rows (train_log, variance_log,
kurtosis_log, val_log) go in with `log_table`, `save()` writes what is buffered as new part files. The training's
`RunLogs` callback decides when (at every checkpoint, so a resume never loses or repeats a row). `train.loggers`
adds Lightning's own loggers under `<run_dir>/logs/`: they receive the per-step scalars (loss, ce, aux, lr,
grad_norm, tokens_per_s, mfu) through `log_metrics`. W&B runs offline (no network; `wandb sync` uploads later).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from ..config.errors import ConfigError
from .logs import LOG_NAMES, LogWriter


class ParquetLogger(Logger):
    """The run's parquet logs (rank 0 writes; see logs.py for the part-file layout and resume semantics)."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.writers = {name: LogWriter(run_dir, name) for name in LOG_NAMES}

    @property
    def name(self) -> str:
        return "parquet"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    def log_table(self, name: str, rows: list[dict]) -> None:
        """Buffer rows (dicts with "step") of log `name`; they reach disk on the next `save()`."""
        self.writers[name].append(rows)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Scalars logged through Lightning: the parquet tables are row-typed and come through `log_table`."""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The run's configuration is in summary.json and checkpoints/fingerprint.json."""

    @rank_zero_only
    def save(self) -> None:
        for writer in self.writers.values():
            writer.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def extra_loggers(names: tuple[str, ...], run_dir: Path, run_id: str) -> list[Logger]:
    """Lightning's csv / tensorboard / wandb loggers (train.loggers) writing under `<run_dir>/logs/`."""
    save_dir = str(run_dir / "logs")
    out: list[Logger] = []
    for name in names:
        if name == "csv":
            from lightning.pytorch.loggers import CSVLogger

            out.append(CSVLogger(save_dir, name="csv", version=""))
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            _require("tensorboard", name)
            out.append(TensorBoardLogger(save_dir, name="tensorboard", version="", default_hp_metric=False))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            _require("wandb", name)
            os.environ.setdefault("WANDB_MODE", "offline")
            run_key = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)  # resumed segments append to the same offline run
            out.append(WandbLogger(name=run_id, save_dir=save_dir, offline=True, project="sparsecod", id=run_key))
        else:
            raise ConfigError(f"train.loggers: unknown logger {name!r}; use csv, tensorboard or wandb")
    return out


def _require(module: str, logger: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"train.loggers has {logger!r} but the {module} package is not installed: "
                          "pip install 'sparsecod[loggers]' (or drop it from train.loggers)")
