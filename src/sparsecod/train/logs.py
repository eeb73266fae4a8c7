"""Append-only training logs that survive resume (train_log, variance_log, kurtosis_log, val_log).

Rows are buffered in memory and flushed as one parquet part file per flush under
`<run_dir>/log_parts/<name>/part-<seq>.parquet` (written atomically; parts are never rewritten). A
resumed run recomputes the steps after its checkpoint and flushes them again in later parts; on
read, every step keeps only the rows of the latest part that holds it, so the table equals the one
of an uninterrupted run. At the end of a run `consolidate` writes `<run_dir>/<name>.parquet`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..fileio import write_parquet_atomic

PARTS_DIR = "log_parts"
LOG_NAMES = ("train_log", "variance_log", "kurtosis_log", "val_log")
_PART = re.compile(r"part-(\d+)\.parquet$")


class LogWriter:
    """Buffers rows (dicts with a "step" key) of one log and flushes them as a new part file."""

    def __init__(self, run_dir: str | Path, name: str) -> None:
        self.dir = Path(run_dir) / PARTS_DIR / name
        self.rows: list[dict] = []

    def append(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def _next_seq(self) -> int:
        seqs = [int(m.group(1)) for p in self.dir.glob("part-*.parquet") if (m := _PART.search(p.name))]
        return max(seqs, default=0) + 1

    def flush(self) -> Path | None:
        if not self.rows:
            return None
        path = self.dir / f"part-{self._next_seq():06d}.parquet"
        write_parquet_atomic(path, pd.DataFrame(self.rows))
        self.rows = []
        return path


def _read_parts(directory: Path) -> pd.DataFrame | None:
    parts = sorted((int(m.group(1)), p) for p in directory.glob("part-*.parquet") if (m := _PART.search(p.name)))
    if not parts:
        return None
    frames = []
    for seq, path in parts:
        df = pd.read_parquet(path)
        df["_part"] = seq
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    latest = df.groupby("step")["_part"].transform("max")
    df = df[df["_part"] == latest].drop(columns="_part")
    keys = ["step", "layer"] if "layer" in df.columns else ["step"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def read_log(run_dir: str | Path, name: str) -> pd.DataFrame:
    """One log of a run as a DataFrame sorted by step (and layer), deduplicated across resumes.

    Reads the part files when present (also while the run is in progress), else the consolidated
    `<run_dir>/<name>.parquet`. name: train_log | variance_log | kurtosis_log | val_log.
    """
    if name not in LOG_NAMES:
        raise ValueError(f"unknown log {name!r}; one of {LOG_NAMES}")
    run_dir = Path(run_dir)
    df = _read_parts(run_dir / PARTS_DIR / name)
    if df is not None:
        return df
    path = run_dir / f"{name}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    raise FileNotFoundError(f"run {run_dir} has no {name}: neither {path} nor parts under {run_dir / PARTS_DIR / name}")


def consolidate(run_dir: str | Path, name: str, max_step: int, columns: list[str]) -> Path:
    """Write `<run_dir>/<name>.parquet` (atomic) from the parts, keeping rows with step <= max_step.

    `columns` gives the schema of an empty log (a logging switch that was off), so the file always exists.
    """
    run_dir = Path(run_dir)
    df = _read_parts(run_dir / PARTS_DIR / name)
    if df is None:
        df = pd.DataFrame({c: pd.Series(dtype="int64" if c in ("step", "layer") else "float64") for c in columns})
    else:
        df = df[df["step"] <= max_step].reset_index(drop=True)
    path = run_dir / f"{name}.parquet"
    write_parquet_atomic(path, df)
    return path
