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
The embedded task `pydoc_cont4` (embedded.py) is read from `task_dir` (its lm-eval YAML and test.jsonl, built by
`sparsecod eval-set` / rule eval_set), always offline; `limit` caps the stock tasks only, `embedded_limit` the embedded one.
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
from .embedded import TASK as EMBEDDED_TASK
from .embedded import YAML_NAME as EMBEDDED_YAML
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
    task_dir: str | os.PathLike | None = None,
    embedded_limit: int | None = None,
) -> pd.DataFrame:
    """Evaluate `<run_dir>/model` zero-shot on `tasks`; write `<run_dir>/eval/` (or `out_dir`).

    `run_dir` may also be the model directory itself (then its parent is taken as the run directory).
    Returns the downstream.csv table. `limit` caps the documents per stock task (per MMLU subject);
    `max_length` defaults to the run's training T (see adapter.SparsecodLM); `task_dir` holds the embedded task,
    of which the first `embedded_limit` items are scored (None: all; items are stored shuffled).
    """
    task_names = parse_tasks(tasks)
    if limit is not None and not limit > 0:
        raise ValueError(f"evaluation.limit / --limit must be > 0 (documents per task) or null, got {limit}")
    if embedded_limit is not None and not embedded_limit >= 1:
        raise ValueError(f"evaluation.embedded_limit / --embedded-limit must be >= 1 (items) or null, "
                         f"got {embedded_limit}")
    stock = [t for t in task_names if t != EMBEDDED_TASK]
    embedded_dir = _embedded_dir(task_dir) if EMBEDDED_TASK in task_names else None
    model_dir = resolve_model_dir(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else model_dir.parent / "eval"
    local = resolve_data_dir(data_dir) if stock else None
    if stock and local is None:
        require_hub(stock)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = _model(model_dir, batch_size, device, dtype, max_length, progress)
    parts = []
    if stock:
        with tempfile.TemporaryDirectory(prefix=".lm_eval_tasks.", dir=out_dir) as include_dir:
            if local is not None:
                eval_names = write_offline_groups(stock, local, Path(include_dir))
                with hf_offline():
                    parts.append(_simple_evaluate(lm, eval_names, include_dir, limit, log_samples, stock=True))
            else:
                parts.append(_simple_evaluate(lm, stock, None, limit, log_samples, stock=True))
        _unwrap_offline_groups(parts[-1])
    if embedded_dir is not None:
        with hf_offline():
            parts.append(_simple_evaluate(lm, [EMBEDDED_TASK], str(embedded_dir), embedded_limit, log_samples,
                                          stock=False))
    results = _merge_results(parts)
    results["config"]["model"] = "sparsecod"
    results["config"]["model_args"] = {"checkpoint": str(model_dir), "batch_size": batch_size, "device": device,
                                       "dtype": dtype, "max_length": lm.max_length}
    results["sparsecod"] = {"model_dir": str(model_dir.resolve()), "tasks": task_names,
                            "data_dir": str(local) if local else None, "limit": limit,
                            "task_dir": str(embedded_dir) if embedded_dir else None, "embedded_limit": embedded_limit}
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


def _embedded_dir(task_dir: str | os.PathLike | None) -> Path:
    """The folder of the embedded task's YAML; ValueError naming how to build it when absent."""
    path = Path(task_dir).expanduser() if task_dir not in (None, "") else None
    if path is None or not (path / EMBEDDED_YAML).is_file():
        where = f"--task-dir {task_dir!r} has no {EMBEDDED_YAML}" if path else "no --task-dir given"
        raise ValueError(f"task {EMBEDDED_TASK!r} is built from the held-out documents ({where}): build it with "
                         f"`sparsecod eval-set --out DIR` (the workflow's rule eval_set) and pass --task-dir DIR")
    return path.resolve()


def _model(model_dir: Path, batch_size: int, device: str, dtype: str, max_length: int | None, progress: bool):
    from .adapter import SparsecodLM

    return SparsecodLM(checkpoint=model_dir, batch_size=batch_size, device=device, dtype=dtype,
                       max_length=max_length, progress=progress)


def _simple_evaluate(lm, tasks: list[str], include_dir: str | None, limit, log_samples: bool, stock: bool) -> dict:
    """`lm_eval.simple_evaluate` zero-shot on `tasks` from `include_dir`; `stock` also indexes the harness's own
    task folder (thousands of YAMLs, ≈ 5 s), which the self-contained embedded task does not need."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_dir, include_defaults=stock)
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=0, limit=limit, task_manager=manager,
                                      log_samples=log_samples)
    if results is None:  # only on non-zero ranks, which a single-process run never has
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    return results


def _merge_results(parts: list[dict]) -> dict:
    """One harness result from several simple_evaluate calls: their per-task mappings joined, the rest the first's."""
    merged = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "config":
                merged[key] = {**merged[key], **value}
            else:
                merged.setdefault(key, value)
    return merged


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
