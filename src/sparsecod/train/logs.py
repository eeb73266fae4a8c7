"""Append-only training logs that survive resume (train_log, variance_log, kurtosis_log, val_log).

Rows are buffered in memory and flushed as one parquet part file per flush under
`<run_dir>/log_parts/<name>/part-<seq>.parquet` (written atomically; parts are never rewritten). A
resumed run recomputes the steps after its checkpoint and flushes them again in later parts; on
read, every step keeps only the rows of the latest part that holds it, so the table equals the one
of an uninterrupted run. At the end of a run `consolidate` writes `<run_dir>/<name>.parquet`.

Every log has one fixed schema (LOG_SCHEMA: its columns in order, with their dtypes): each flushed part and the
consolidated file carry exactly those columns and dtypes, so part files written before and after a resume
concatenate without a column turning into float64 NaNs, and a resumed run's tables equal an uninterrupted one's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..fileio import write_parquet_atomic

PARTS_DIR = "log_parts"
_F, _I = "float64", "int64"
LOG_SCHEMA: dict[str, dict[str, str]] = {  # log -> {column: dtype}, in column order
    "train_log": {"step": _I, "loss": _F, "ce": _F, "aux": _F, "lr": _F, "grad_norm": _F, "tokens": _I,
                  "train_seconds": _F},
    "variance_log": {"step": _I, "layer": _I, "out_var": _F, "attn_out_var": _F, "ffn_out_var": _F, "var_pre": _F,
                     "var_post": _F},
    "kurtosis_log": {"step": _I, "layer": _I, "kurtosis": _F, "kurt_p50": _F, "kurt_p90": _F, "kurt_p99": _F,
                     "kurt_max": _F},
    "val_log": {"step": _I, "val_loss": _F, "val_targets": _I},
}
LOG_NAMES = tuple(LOG_SCHEMA)
_PART = re.compile(r"part-(\d+)\.parquet$")


def typed_frame(name: str, rows: list[dict]) -> pd.DataFrame:
    """Rows of log `name` as a DataFrame with exactly the columns and dtypes of LOG_SCHEMA[name].

    A row without one of the columns (or with another) is a programming error, raised here rather than written
    as a NaN column that would change the column's dtype in every later read.
    """
    schema = LOG_SCHEMA[name]
    for row in rows:
        if row.keys() != schema.keys():
            missing, extra = sorted(schema.keys() - row.keys()), sorted(row.keys() - schema.keys())
            raise ValueError(f"{name} row of step {row.get('step')} has missing columns {missing} / unknown "
                             f"columns {extra}; the columns are {list(schema)}")
    return pd.DataFrame(rows, columns=list(schema)).astype(schema)


def _as_schema(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """df with the schema's dtypes where its values allow (an integer column holding NaN, only possible in part
    files written before the schema existed, stays float)."""
    schema = LOG_SCHEMA[name]
    return df.astype({c: t for c, t in schema.items() if c in df.columns and not (t == _I and df[c].isna().any())})


class LogWriter:
    """Buffers rows (dicts with the columns of LOG_SCHEMA[name]) of one log and flushes them as a new part file."""

    def __init__(self, run_dir: str | Path, name: str) -> None:
        if name not in LOG_SCHEMA:
            raise ValueError(f"unknown log {name!r}; one of {LOG_NAMES}")
        self.name = name
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
        write_parquet_atomic(path, typed_frame(self.name, self.rows))
        self.rows = []
        return path


def _read_parts(run_dir: Path, name: str) -> pd.DataFrame | None:
    directory = run_dir / PARTS_DIR / name
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
    return _as_schema(name, df.sort_values(keys, kind="stable").reset_index(drop=True))


def read_log(run_dir: str | Path, name: str) -> pd.DataFrame:
    """One log of a run as a DataFrame sorted by step (and layer), deduplicated across resumes.

    Reads the part files when present (also while the run is in progress), else the consolidated
    `<run_dir>/<name>.parquet`. name: train_log | variance_log | kurtosis_log | val_log.
    """
    if name not in LOG_NAMES:
        raise ValueError(f"unknown log {name!r}; one of {LOG_NAMES}")
    run_dir = Path(run_dir)
    df = _read_parts(run_dir, name)
    if df is not None:
        return df
    path = run_dir / f"{name}.parquet"
    if path.is_file():
        return _as_schema(name, pd.read_parquet(path))
    raise FileNotFoundError(f"run {run_dir} has no {name}: neither {path} nor parts under {run_dir / PARTS_DIR / name}")


def consolidate(run_dir: str | Path, name: str, max_step: int) -> Path:
    """Write `<run_dir>/<name>.parquet` (atomic) from the parts, keeping rows with step <= max_step.

    A log without parts (a logging switch that was off) is written empty with its LOG_SCHEMA columns, so the file
    always exists.
    """
    run_dir = Path(run_dir)
    df = _read_parts(run_dir, name)
    if df is None:
        df = typed_frame(name, [])
    else:
        df = df[df["step"] <= max_step].reset_index(drop=True)
    path = run_dir / f"{name}.parquet"
    write_parquet_atomic(path, df)
    return path
