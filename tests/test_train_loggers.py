"""Lightning loggers of a run (issue 17) and the throughput/MFU output (issue 16): parquet logs through a Logger,
`loggers: [tensorboard, csv]` write their files, progress without a terminal is plain lines, summary has MFU."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from _train_testutil import shard, tiny_run  # noqa: F401  (fixtures)
from sparsecod.config import TrainConfig
from sparsecod.model.config import ConfigError
from sparsecod.model.flops import flops_per_token
from sparsecod.train import read_log, train_run
from sparsecod.train.loggers import ParquetLogger


def test_tiny_run_with_tensorboard_and_csv_loggers(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "dense", steps=4)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, loggers=("tensorboard", "csv")))
    summary = train_run(run, tmp_path / "r", peak_flops=1e11)
    events = list((tmp_path / "r" / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"loss", "lr", "tokens_per_s", "mfu"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss")] == [0, 1, 2, 3]
    train_log = read_log(tmp_path / "r", "train_log")
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx(train_log["loss"].tolist())
    csv = (tmp_path / "r" / "logs" / "csv" / "metrics.csv").read_text().splitlines()
    assert csv[0].split(",")[:1] and len(csv) == 5 and "mfu" in csv[0]
    fpt = flops_per_token(run.model, run.train.seq_len)
    assert summary["flops_per_token"] == fpt and summary["peak_flops"] == 1e11
    assert summary["mfu"] == pytest.approx(summary["tokens_per_s"] * fpt / 1e11)


def test_parquet_logs_are_written_by_a_lightning_logger(tmp_path):
    from lightning.pytorch.loggers import Logger

    logger = ParquetLogger(tmp_path)
    assert isinstance(logger, Logger)
    row = {"step": 0, "loss": 1.0, "ce": 1.0, "aux": 0.0, "lr": 1e-3, "grad_norm": 0.5, "tokens": 16,
           "train_seconds": 0.1}
    logger.log_table("train_log", [row])
    assert read_log_or_none(tmp_path) is None  # buffered until save()
    logger.save()
    assert read_log(tmp_path, "train_log")["loss"].tolist() == [1.0]


def read_log_or_none(run_dir):
    try:
        return read_log(run_dir, "train_log")
    except FileNotFoundError:
        return None


def test_progress_without_a_terminal_is_plain_lines(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "dense", steps=6)
    run = dataclasses.replace(run, meta={"peak_flops": 1e11})
    run.save(tmp_path / "run.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run([sys.executable, "-m", "sparsecod.cli", "train", "--config", str(tmp_path / "run.yaml"),
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if " step " in x and "tokens/s" in x]
    assert [x.split(" step ")[1].split()[0] for x in lines] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    assert all(" loss " in x and " mfu " in x for x in lines)


def test_unknown_logger_is_a_config_error():
    with pytest.raises(ConfigError, match="train.loggers"):
        TrainConfig(loggers=("mlflow",))
