"""Collect every scalar of every paper run into one tidy table, `results/summary.parquet` (DESIGN data flow).

One row per (run, source, metric): source is `train` (summary.json), an analysis family (`causal`,
`usefulness`, ... from analysis/<family>.json) or `eval` (lm-eval headline numbers from eval/downstream.csv).
Aliases (e.g. gqa-G1 and dense-1B of seq-4096, spec §3) get their own rows with their own group and labels.
Per-layer curves stay in the run directories (train logs, analysis parquet files) where figures read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .experiments import Registry
from .fileio import write_parquet_atomic

COLUMNS = ["run_id", "trained_as", "group", "scale", "source", "metric", "value"]


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric leaves of nested JSON as ('a.b.c', value); booleans become 0/1; lists, strings, nulls are skipped."""
    if isinstance(data, (bool, int, float)):
        yield prefix, float(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))


def _run_rows(run_dir: Path) -> Iterator[tuple[str, str, float]]:
    summary = run_dir / "summary.json"
    if summary.is_file():
        scalars = {k: v for k, v in json.loads(summary.read_text()).items() if k != "config"}  # run.yaml has it
        for metric, value in flatten(scalars):
            yield "train", metric, value
    for path in sorted((run_dir / "analysis").glob("*.json")):
        if path.stem == "suite":
            continue
        for metric, value in flatten(json.loads(path.read_text())):
            yield path.stem, metric, value
    downstream = run_dir / "eval" / "downstream.csv"
    if downstream.is_file():
        table = pd.read_csv(downstream)
        for row in table.itertuples(index=False):
            yield "eval", f"{row.task}.{row.metric}", float(row.value)


def build_summary(reg: Registry) -> pd.DataFrame:
    """The tidy table of every paper run id (aliases included); missing files simply contribute no rows."""
    rows: list[dict[str, Any]] = []
    for run_id in reg.all_ids():
        spec = reg.spec(run_id)
        base = {"run_id": run_id, "trained_as": reg.canonical(run_id), "group": spec.group, "scale": reg.config.get("scale")}
        labels = {f"label_{k}": v for k, v in spec.labels.items()}
        for source, metric, value in _run_rows(reg.run_dir(run_id)):
            rows.append({**base, "source": source, "metric": metric, "value": value, **labels})
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    label_cols = sorted(c for c in table.columns if c.startswith("label_"))
    for col in label_cols:  # mixed label types (numbers and strings) are stored as text
        if table[col].map(lambda v: isinstance(v, str)).any():
            table[col] = table[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return table[COLUMNS + label_cols]


def collect(reg: Registry, out: Path, log: Path | None = None) -> pd.DataFrame:
    """Write `build_summary(reg)` to `out` atomically; a line per run goes to `log`."""
    table = build_summary(reg)
    write_parquet_atomic(out, table)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        counts = table.groupby("run_id").size() if not table.empty else {}
        log.write_text("".join(f"{run}: {n} values\n" for run, n in dict(counts).items()))
    return table
