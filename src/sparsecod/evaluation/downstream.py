"""`sparsecod evaluate`: zero-shot downstream accuracy of a trained run with the stock lm-eval tasks (protocol M12).

Layout written under `<run_dir>/eval/` (each file atomically):
    lm_eval.json      the harness result of `lm_eval.simple_evaluate` (num_fewshot=0), JSON-safe (NaN -> null);
                      per-sample records are not in it
    downstream.csv    one row per requested task: task, metric, value, stderr, n
                      metric = the headline of protocol M12 (mmlu: acc, the subject-size-weighted group mean;
                      arc_easy / arc_challenge / hellaswag: acc_norm; other tasks: acc_norm if reported,
                      else acc); value and stderr ×100; n = documents scored
    samples/<task>.jsonl   per-document records of every scored task (only with log_samples)

With a local data directory (`data_dir`, else $SPARSECOD_EVAL_DATA) the stock tasks read it through
generated group YAMLs (tasks.py) and the process runs with HF offline mode on; without one the stock
Hub datasets are used, and an unreachable Hub is an immediate error naming `evaluation.data_dir`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..fileio import write_bytes_atomic, write_csv_atomic
from .checkpoint import resolve_model_dir
from .tasks import DEFAULT_TASKS, GROUP_PREFIX, hf_offline, require_hub, resolve_data_dir, write_offline_groups

log = logging.getLogger(__name__)

HEADLINE = {"mmlu": "acc", "arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm"}
CSV_COLUMNS = ["task", "metric", "value", "stderr", "n"]


def parse_tasks(values: Sequence[str] | str | None) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (order kept, duplicates dropped); None -> the protocol M12 set."""
    if values is None:
        return list(DEFAULT_TASKS)
    if isinstance(values, str):
        values = [values]
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        raise ValueError("no tasks given (evaluation.tasks / --tasks)")
    return list(dict.fromkeys(names))


def evaluate_run(
    run_dir: str | os.PathLike,
    tasks: Sequence[str] | str | None = None,
    *,
    limit: int | float | None = None,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    log_samples: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    max_length: int | None = None,
    progress: bool = True,
    out_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Evaluate `<run_dir>/model` zero-shot on `tasks`; write `<run_dir>/eval/` (or `out_dir`).

    `run_dir` may also be the model directory itself (then its parent is taken as the run directory).
    Returns the downstream.csv table. `limit` caps the documents per task (per MMLU subject);
    `max_length` defaults to the run's training T (see adapter.SparsecodLM).
    """
    task_names = parse_tasks(tasks)
    if limit is not None and not limit > 0:
        raise ValueError(f"evaluation.limit / --limit must be > 0 (documents per task) or null, got {limit}")
    model_dir = resolve_model_dir(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else model_dir.parent / "eval"
    local = resolve_data_dir(data_dir)
    if local is None:
        require_hub(task_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lm_eval_tasks.", dir=out_dir) as include_dir:
        if local is not None:
            eval_names = write_offline_groups(task_names, local, Path(include_dir))
            with hf_offline():
                results = _simple_evaluate(model_dir, eval_names, include_dir, limit, batch_size, log_samples,
                                           device, dtype, max_length, progress)
        else:
            results = _simple_evaluate(model_dir, task_names, None, limit, batch_size, log_samples, device, dtype,
                                       max_length, progress)
    _unwrap_offline_groups(results)
    results["sparsecod"] = {"model_dir": str(model_dir.resolve()), "tasks": task_names,
                            "data_dir": str(local) if local else None, "limit": limit}
    samples = results.pop("samples", None)
    table = headline_table(results, task_names)
    if log_samples and samples:
        sample_dir = out_dir / "samples"
        sample_dir.mkdir(exist_ok=True)
        for task, records in samples.items():
            lines = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
            write_bytes_atomic(sample_dir / f"{task}.jsonl", lines.encode())
    write_csv_atomic(out_dir / "downstream.csv", table)
    text = json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(out_dir / "lm_eval.json", text.encode())  # last: the workflow's declared output
    return table


def _simple_evaluate(model_dir: Path, tasks: list[str], include_dir: str | None, limit, batch_size: int,
                     log_samples: bool, device: str, dtype: str, max_length: int | None, progress: bool) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from .adapter import SparsecodLM

    lm = SparsecodLM(checkpoint=model_dir, batch_size=batch_size, device=device, dtype=dtype, max_length=max_length,
                     progress=progress)
    manager = TaskManager(include_path=include_dir) if include_dir else TaskManager()
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, limit=limit, task_manager=manager,
                                      log_samples=log_samples)
    if results is None:  # only on non-zero ranks, which a single-process run never has
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    results["config"]["model"] = "sparsecod"
    results["config"]["model_args"] = {"checkpoint": str(model_dir), "batch_size": batch_size, "device": device,
                                       "dtype": dtype, "max_length": lm.max_length}
    return results


def _unwrap_offline_groups(results: dict) -> None:
    """Drop the metric-less `sparsecod_offline_<name>` wrapper groups so keys look like a stock run's."""
    for key in ("results", "groups"):
        for name in [k for k in results.get(key, {}) if k.startswith(GROUP_PREFIX)]:
            del results[key][name]
    subtasks = results.get("group_subtasks", {})
    for name in [k for k in subtasks if k.startswith(GROUP_PREFIX)]:
        children = subtasks.pop(name)
        for child in children:  # a wrapped plain task becomes a top-level entry, as in a stock run
            subtasks.setdefault(child, [])


def headline_table(results: dict, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per task with its headline metric ×100 (protocol M12); KeyError when a task has no result."""
    rows = []
    for task in tasks:
        entry = results["results"].get(task)
        if entry is None:
            raise KeyError(f"lm-eval returned no result for task {task!r} (got {sorted(results['results'])})")
        metric = HEADLINE.get(task) or ("acc_norm" if "acc_norm,none" in entry else "acc")
        if f"{metric},none" not in entry:
            raise KeyError(f"lm-eval result of {task!r} has no {metric!r}: {sorted(entry)}")
        stderr = entry.get(f"{metric}_stderr,none")
        rows.append({
            "task": task,
            "metric": metric,
            "value": 100.0 * float(entry[f"{metric},none"]),
            "stderr": 100.0 * float(stderr) if isinstance(stderr, (int, float)) else math.nan,
            "n": _documents(results, task),
        })
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _documents(results: dict, name: str) -> int:
    """Documents scored for a task, summed over the leaves of a group."""
    n_samples = results.get("n-samples", {})
    if name in n_samples:
        return int(n_samples[name]["effective"])
    return sum(_documents(results, child) for child in results.get("group_subtasks", {}).get(name, []))


def json_safe(obj: Any) -> Any:
    """Recursively make `obj` strict-JSON: NaN/inf -> None, numpy scalars -> Python, other objects -> str."""
    from lm_eval.utils import handle_non_serializable

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    converted = handle_non_serializable(obj)
    return converted if isinstance(converted, str) else json_safe(converted)
