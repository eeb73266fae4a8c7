"""Read access to a finished (or partial) results directory for figures, tables and claims (protocol §4).

`Results` holds the tidy summary (collect.py: run_id, trained_as, group, scale, source, metric, value, label_*)
of the groups a figure needs, and opens the per-run files it points to: training logs (M1/M2 variance_log, M10
kurtosis_log), analysis tables (`analysis/<family>.parquet`) and Jacobian matrices (`analysis/jacobian_layerNN.npy`).
Missing files and metrics come back as None / NaN so a partial results directory still renders.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Fig 1's average accuracy and claim E6-accuracy (protocol E6): the mean acc_norm of these lm-eval tasks.
PAPER_ACCURACY_TASKS = ("arc_challenge", "hellaswag")

# Readable names of the runs whose labels do not spell them (protocol §3 E5, Table 5).
MODEL_NAMES = {"dense-400M": "Dense-400M", "moe-2BA400M": "MoE-2BA400M", "dense-1B": "Dense-1B", "moe-7BA1B": "MoE-7BA1B"}


def run_label(row: Mapping) -> str:
    """Legend name of a run from its labels: L=16, λ=0.1, T=2048, G=4, Dense-1B, or the ablation label."""
    def get(key):
        value = row.get(f"label_{key}")
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else value

    group = row.get("group")
    if group == "weight_decay" and get("weight_decay") is not None:
        return f"λ={float(get('weight_decay')):g}"
    if group == "seqlen" and get("seq_len") is not None:
        return f"T={int(float(get('seq_len')))}"
    if group == "gqa" and get("group_size") is not None:
        return f"G={int(float(get('group_size')))}"
    if group == "ablation" and get("label") is not None:
        return str(get("label"))
    if row.get("run_id") in MODEL_NAMES:
        return MODEL_NAMES[row["run_id"]]
    if get("depth") is not None:
        return f"L={int(float(get('depth')))}"
    return str(row.get("run_id"))


class Results:
    """A results directory plus the summary rows of some groups (one or more `summary/<group>.parquet` files)."""

    def __init__(self, results_dir: str | os.PathLike, summary: pd.DataFrame) -> None:
        self.dir = Path(results_dir)
        self.summary = summary

    @classmethod
    def load(cls, results_dir: str | os.PathLike, summaries: Iterable[str | os.PathLike]) -> "Results":
        paths = [Path(p) for p in summaries]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"summary file(s) {', '.join(missing)} missing: run `snakemake <figure target>` "
                                    "(it collects the runs first) or `sparsecod collect`")
        frames = [pd.read_parquet(p) for p in paths]
        summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return cls(results_dir, summary.drop_duplicates(["run_id", "group", "source", "metric"]))

    # -- runs and scalars --------------------------------------------------------------------------------
    def runs(self, group: str) -> pd.DataFrame:
        """One row per run of `group` in registry order: run_id, trained_as, group, label (legend name), label_*."""
        part = self.summary[self.summary["group"] == group]
        if "base_run" in part:  # replicate seeds are reached through `replicas`
            part = part[part["base_run"].isna() | (part["base_run"] == part["run_id"])]
        if part.empty:
            return pd.DataFrame(columns=["run_id", "trained_as", "group", "label"])
        label_cols = [c for c in part.columns if c.startswith("label_") and part[c].notna().any()]
        runs = part.drop_duplicates("run_id")[["run_id", "trained_as", "group", *label_cols]].reset_index(drop=True)
        runs["label"] = [run_label(r) for r in runs.to_dict("records")]
        return runs

    def replicas(self, run_id: str) -> list[str]:
        """The run ids of every seed of `run_id` (seed 0 first); [run_id] without replicate seeds."""
        if "base_run" not in self.summary:
            return [run_id]
        part = self.summary[self.summary["base_run"] == run_id].drop_duplicates("run_id").sort_values("seed")
        return part["run_id"].tolist() or [run_id]

    def seed_values(self, run_id: str, source: str, metric: str) -> list[float]:
        """The value of every seed of `run_id` (NaN where missing)."""
        return [self.value(r, source, metric) for r in self.replicas(run_id)]

    def value(self, run_id: str, source: str, metric: str) -> float:
        rows = self.summary[(self.summary["run_id"] == run_id) & (self.summary["source"] == source)
                            & (self.summary["metric"] == metric)]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")

    def scalars(self, group: str, metrics: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
        """`runs(group)` plus one column per name in `metrics` (name -> (source, metric)): the mean over the run's
        seeds (NaN where missing), and `<name>_seeds` with the per-seed values (for error bars)."""
        runs = self.runs(group)
        for name, (source, metric) in metrics.items():
            seeds = [self.seed_values(r, source, metric) for r in runs["run_id"]]
            runs[name] = [float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for v in seeds]
            runs[f"{name}_seeds"] = seeds
        return runs

    def eval_metrics(self, run_ids: Iterable[str]) -> list[str]:
        """The evaluated `<task>.<headline metric>` keys (M12, eval/downstream.csv) of these runs and their seeds,
        in summary order; only the tasks that were actually evaluated."""
        ids = {r for run in run_ids for r in self.replicas(run)}
        part = self.summary[(self.summary["source"] == "eval") & self.summary["run_id"].isin(ids)]
        return list(dict.fromkeys(m for m in part["metric"] if not m.endswith("_stderr")))

    def accuracy_tasks(self, run_ids: Iterable[str]) -> tuple[str, ...]:
        """The tasks whose acc_norm Fig 1's average accuracy (and claim E6-accuracy) averages over these runs
        (protocol E6): ARC-Challenge and HellaSwag where they were evaluated (the paper's), else every other task
        evaluated with acc_norm (at small scale without the stock data: the embedded pydoc_cont4); () if none."""
        tasks = [m.rsplit(".", 1)[0] for m in self.eval_metrics(run_ids) if m.endswith(".acc_norm")]
        if set(PAPER_ACCURACY_TASKS) <= set(tasks):
            return PAPER_ACCURACY_TASKS
        return tuple(tasks)

    def common_step(self, run_ids: Iterable[str]) -> int | None:
        """Last logged step of the shortest of these runs (M1 curves compared there, e.g. Fig 5a at 2,384 steps)."""
        ends = [self.value(r, "variance", "last_layer.steps") for r in run_ids]
        ends = [e for e in ends if np.isfinite(e)]
        return int(min(ends)) if ends else None

    def attention_lengths(self, run_ids: Iterable[str] | None = None) -> list[int]:
        """Evaluation lengths T_e with M8/M9 values (paper: 512 … 8192), ascending; optionally of some runs only."""
        part = self.summary[self.summary["source"] == "attention"]
        if run_ids is not None:
            part = part[part["run_id"].isin(list(run_ids))]
        return sorted({int(m.group(1)) for m in part["metric"].map(lambda s: re.fullmatch(r"sparsity\.(\d+)\..+", s))
                       if m})

    def config(self, run_id: str) -> dict:
        """The run's RunConfig as a dict (`runs/<trained_as>/run.yaml`); {} when missing."""
        import yaml

        path = self.run_dir(run_id) / "run.yaml"
        return yaml.safe_load(path.read_text()) if path.is_file() else {}

    # -- per-run files -----------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        rows = self.summary[self.summary["run_id"] == run_id]
        return self.dir / "runs" / (rows["trained_as"].iloc[0] if len(rows) else run_id)

    def _parquet(self, path: Path) -> pd.DataFrame | None:
        return pd.read_parquet(path) if path.is_file() else None

    def variance(self, run_id: str) -> pd.DataFrame | None:
        """M1/M2 long table (step, layer, out_var, attn_out_var, ffn_out_var, var_pre, var_post)."""
        return self._parquet(self.run_dir(run_id) / "variance_log.parquet")

    def kurtosis(self, run_id: str) -> pd.DataFrame | None:
        """M10 table (step, layer, kurtosis, kurt_p50, kurt_p90, kurt_p99, kurt_max)."""
        return self._parquet(self.run_dir(run_id) / "kurtosis_log.parquet")

    def analysis(self, run_id: str, family: str) -> pd.DataFrame | None:
        """Tidy analysis table: causal (s, l, causal), permutation (i, j, loss, permutation), usefulness
        (variant, layer, ratio, ...), jacobian (layer, deviation, ...), attention (T_e, layer, head, eps, ...),
        weight_sparsity (subset, eps, sparsity, n_params)."""
        return self._parquet(self.run_dir(run_id) / "analysis" / f"{family}.parquet")

    def analysis_json(self, run_id: str, family: str) -> dict:
        path = self.run_dir(run_id) / "analysis" / f"{family}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def jacobians(self, run_id: str) -> dict[int, np.ndarray]:
        """Layer -> averaged Jacobian J̄ (d, d) for the layers whose matrix was saved (M3b)."""
        doc = self.analysis_json(run_id, "jacobian")
        out = {}
        for key, name in (doc.get("files") or {}).items():
            if key.startswith("layer"):
                out[int(key[5:])] = np.load(self.run_dir(run_id) / "analysis" / name)
        return dict(sorted(out.items()))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of paired finite values (NaN with fewer than 3 pairs or a constant side)."""
    pairs = [(a, b) for a, b in zip(x, y) if np.isfinite(a) and np.isfinite(b)]
    if len(pairs) < 3:
        return float("nan")
    a, b = (pd.Series(v).rank().to_numpy() for v in zip(*pairs))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# Beyond the paper (issue 19): the two arms of the depth sweep, Pre-LN (E1, group depth) and LayerNorm Scaling (lns).
DEPTH_ARMS = (("Pre-LN", "depth"), ("LNS", "lns"))


def depth_arms(res: Results) -> pd.DataFrame:
    """One row per run of both arms with a depth label: depth, arm (Pre-LN | LNS), run_id, label; by depth, arm."""
    rows = []
    for rank, (arm, group) in enumerate(DEPTH_ARMS):
        for run in res.runs(group).to_dict("records"):
            depth = float(run.get("label_depth", math.nan))
            if np.isfinite(depth):
                rows.append({"depth": int(depth), "rank": rank, "arm": arm, "run_id": run["run_id"],
                             "label": f"L={int(depth)} {arm}"})
    table = pd.DataFrame(rows, columns=["depth", "rank", "arm", "run_id", "label"])
    return table.sort_values(["depth", "rank"]).drop(columns="rank").reset_index(drop=True)


class DirectoryResults(Results):
    """Analysed directories that are not workflow runs (external checkpoints, issue 19): run id = a directory
    under `root` holding analysis/ (sparsecod.external layout). No summary: per-run files only."""

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(root, pd.DataFrame(columns=["run_id", "trained_as", "group", "source", "metric", "value"]))

    def run_dir(self, run_id: str) -> Path:
        return self.dir / run_id
