"""Collect every scalar of every paper run into one tidy table, `results/summary.parquet` (DESIGN data flow).

One row per (run, source, metric): source is `train` (summary.json), `variance` (M1 scalars of the last layer
from variance_log.parquet: `last_layer.final`, `.final_mean` over the last 10% of logged steps, `.peak`,
`.peak_step`, `.steps`, `.init` at step 0), an analysis family (`causal`, `usefulness`, ... from
analysis/<family>.json, with their window-bootstrap intervals `ci.<key>.low/high`), the same family of the
untrained control (`<family>@init` from analysis/init/<family>.json: step-0 weights, same windows) or `eval`
(lm-eval headline numbers and their `<metric>_stderr` from eval/downstream.csv).
Aliases (e.g. gqa-G1 and dense-1B of seq-4096, protocol §3) get their own rows with their own group and labels.
Replicate seeds (`depth-L16~s1`, ...) get their own rows; every row names its `base_run` (the seed-0 id) and
`seed` index and carries the mean, standard deviation and count over the seeds of its base run
(`seed_mean`, `seed_sd`, `seed_n`; sd NaN with one seed).
Per-layer curves stay in the run directories (train logs, analysis parquet files) where figures read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .experiments import Registry
from .fileio import write_parquet_atomic
from .metrics.registry import INIT_DIR, INIT_SUFFIX
from .metrics.variance_curve import last_layer_curve, tail_mean

COLUMNS = ["run_id", "trained_as", "group", "scale", "source", "metric", "value", "base_run", "seed",
           "seed_mean", "seed_sd", "seed_n"]
INIT = INIT_SUFFIX  # source suffix of the untrained control's analysis families (metrics.registry)


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric leaves of nested JSON as ('a.b.c', value); booleans become 0/1; lists, strings, nulls are skipped."""
    if isinstance(data, (bool, int, float)):
        yield prefix, float(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))


def last_layer_variance(log: pd.DataFrame) -> dict[str, float]:
    """M1 scalars of the last block's output x_L from a variance log (step, layer, out_var, ...)."""
    curve = last_layer_curve(log)
    if curve.empty:
        return {}
    peak = curve.loc[curve["value"].idxmax()]
    first = curve[curve["step"] == 0]["value"]
    init = {"init": float(first.iloc[0])} if len(first) else {}
    return {**init, "final": float(curve["value"].iloc[-1]), "final_mean": tail_mean(curve["value"]),
            "peak": float(peak["value"]), "peak_step": float(peak["step"]), "steps": float(curve["step"].iloc[-1])}


def _run_rows(run_dir: Path) -> Iterator[tuple[str, str, float]]:
    """(source, metric, value) of one run directory; always ("run", "trained", 1/0), so that a run with no
    finished file still has a row and tables show it with empty cells rather than dropping it."""
    summary = run_dir / "summary.json"
    trained = summary.is_file()
    yield "run", "trained", float(trained)
    if trained:
        scalars = {k: v for k, v in json.loads(summary.read_text()).items() if k != "config"}  # run.yaml has it
        for metric, value in flatten(scalars):
            yield "train", metric, value
    variance = run_dir / "variance_log.parquet"
    if variance.is_file():
        for metric, value in flatten({"last_layer": last_layer_variance(pd.read_parquet(variance))}):
            yield "variance", metric, value
    for folder, suffix in ((run_dir / "analysis", ""), (run_dir / "analysis" / INIT_DIR, INIT)):
        for path in sorted(folder.glob("*.json")):
            if path.stem == "suite":
                continue
            for metric, value in flatten(json.loads(path.read_text())):
                yield path.stem + suffix, metric, value
    downstream = run_dir / "eval" / "downstream.csv"
    if downstream.is_file():
        table = pd.read_csv(downstream)
        for row in table.itertuples(index=False):
            yield "eval", f"{row.task}.{row.metric}", float(row.value)
            if "stderr" in table.columns and pd.notna(row.stderr):
                yield "eval", f"{row.task}.{row.metric}_stderr", float(row.stderr)


def build_summary(reg: Registry, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """The tidy table of every paper run id (aliases included) of `groups` (default: all); a run's missing files
    contribute no rows beyond its ("run", "trained", 0) row."""
    rows: list[dict[str, Any]] = []
    for run_id in reg.all_ids(seeds=True) if groups is None else [r for g in groups for r in reg.group_ids(g)]:
        spec = reg.spec(run_id)
        base = {"run_id": run_id, "trained_as": reg.canonical(run_id), "group": spec.group,
                "scale": reg.config.get("scale"), "base_run": spec.replica_of or run_id, "seed": spec.seed_index}
        labels = {f"label_{k}": v for k, v in spec.labels.items()}
        for source, metric, value in _run_rows(reg.run_dir(run_id)):
            rows.append({**base, "source": source, "metric": metric, "value": value, **labels})
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    table = with_seed_stats(table)
    label_cols = sorted(c for c in table.columns if c.startswith("label_"))
    for col in label_cols:  # mixed label types (numbers and strings) are stored as text
        if table[col].map(lambda v: isinstance(v, str)).any():
            table[col] = table[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return table[COLUMNS + label_cols]


def with_seed_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Add seed_mean / seed_sd / seed_n: the value's mean, sample standard deviation and count over the seeds of
    its base run (same group, source and metric)."""
    by = table.groupby(["base_run", "group", "source", "metric"])["value"]
    return table.assign(seed_mean=by.transform("mean"), seed_sd=by.transform("std"), seed_n=by.transform("count"))


def collect(reg: Registry, out: Path, log: Path | None = None, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Write `build_summary(reg, groups)` to `out` atomically; a line per run goes to `log`."""
    table = build_summary(reg, groups)
    write_parquet_atomic(out, table)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        counts = table.groupby("run_id").size() if not table.empty else {}
        log.write_text("".join(f"{run}: {n} values\n" for run, n in dict(counts).items()))
    return table


def merge_summaries(paths: Sequence[Path], out: Path, log: Path | None = None) -> pd.DataFrame:
    """Concatenate group summaries (`summary/<group>.parquet`) into one table written atomically to `out`."""
    frames = [pd.read_parquet(p) for p in paths]
    table = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(len(f) for f in frames) \
        else pd.DataFrame(columns=COLUMNS)
    write_parquet_atomic(out, table)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{len(table)} rows from {len(paths)} group summaries\n")
    return table
