"""A synthetic results directory for figure, table and claims tests (issue 7): no training needed.

`make_results(root, trend)` writes, for every run of the smoke config's registry, the files the pipeline would:
run.yaml, summary.json, variance_log / kurtosis_log, analysis/<family>.{json,parquet,npy} (through the real
metric writer) and eval/downstream.csv, then the real `collect` builds summary/<group>.parquet and summary.parquet.
trend=+1 makes every claim of the paper hold (variance grows with depth and falls with λ, T, G and for MoE;
usefulness falls with depth and is higher for MoE; attention sparsity rises with T; the kept ablation steps raise
accuracy; LNS, group lns, halves the variance of the Pre-LN run of equal depth); trend=-1 reverses each of them.
Every run also gets an untrained control (analysis/init/, variance at step 0) without any of these effects, and
every score its window-bootstrap interval (`ci`), as the pipeline writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsecod.collect import collect
from sparsecod.experiments import GROUPS, Registry, load_config
from sparsecod.metrics.results import MetricResult, write_result

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config" / "smoke.yaml"
ABLATION_ORDER = ["abl-A0", "abl-A1", "abl-A2", "abl-A3", "abl-A4", "abl-A5", "abl-A6", "abl-A7", "abl-A8"]
KEPT_GAIN = {"abl-A0": 0.5, "abl-A1": 0.0, "abl-A2": 0.5, "abl-A3": -0.5, "abl-A4": 2.0, "abl-A5": 1.0,
             "abl-A6": -1.0, "abl-A7": 2.5, "abl-A8": 4.5}


SHARED_1B = 1024 / 4096  # strength of seq-4096, which gqa-G1 and dense-1B reuse (protocol §3 E3-E5)


@pytest.fixture(autouse=True)
def close_figures():
    """Tests that inspect figures without saving them close them afterwards (autouse where imported)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def strength(reg: Registry, run_id: str) -> float:
    """How strongly a run shows the paper's effect: its last-layer variance factor (< 1 = lower variance).
    GQA and 1B MoE runs are scaled relative to the shared seq-4096 run so their comparisons hold too."""
    spec = reg.spec(run_id)
    lab = spec.labels
    if spec.group == "depth" or spec.group == "sublayer":
        return lab["depth"] / 16
    if spec.group == "lns":  # LayerNorm Scaling halves the variance of the Pre-LN run of equal depth
        return lab["depth"] / 32
    if spec.group == "weight_decay":
        return 1 / (1 + lab["weight_decay"])
    if spec.group == "seqlen":
        return 1024 / lab["seq_len"]
    if spec.group == "gqa":
        return SHARED_1B * lab["group_size"] ** -0.5
    if spec.group == "moe":
        dense = SHARED_1B if lab["size"] == "1B" else 1.0
        return 0.3 * dense if lab["family"] == "moe" else dense
    return 1.0


STOCK_TASKS = ("arc_challenge", "hellaswag", "arc_easy", "mmlu")


def make_results(root: Path, trend: int = 1, skip_tasks: tuple[str, ...] = ()) -> Registry:
    """Synthetic smoke-scale results; `skip_tasks` are left unevaluated (e.g. STOCK_TASKS: offline, no data)."""
    config = load_config(SMOKE)
    config["results"] = str(root)
    reg = Registry(config)
    data = reg.data_dir()
    data.mkdir(parents=True)
    (data / "meta.json").write_text(json.dumps({"vocab_size": 2048}))
    (root / "sweeps").mkdir()
    for name in reg.sweeps:
        (root / "sweeps" / f"{name}.json").write_text(json.dumps({"sweep": name, "best_lr": 3e-3}))
    rng = np.random.default_rng(0)
    for run_id in reg.trained_ids():
        spec = reg.runs[run_id]
        if spec.sweep_of:
            continue
        _write_run(reg, run_id, trend, rng, skip_tasks)
    for group in GROUPS:
        collect(reg, root / "summary" / f"{group}.parquet", groups=[group])
    collect(reg, root / "summary.parquet")
    return reg


def _ci(scalars: dict, keys: list, width: float = 0.01) -> dict:
    """The scalars plus `ci.<key>.{low,high}` = value ± width (the metric writers' window-bootstrap layout);
    a key is a name or a tuple path into nested scalars."""
    ci = {}
    for key in keys:
        node, parts = scalars, (key,) if isinstance(key, str) else key
        for part in parts:
            node = node[part]
        leaf = ci
        for part in parts[:-1]:
            leaf = leaf.setdefault(part, {})
        leaf[parts[-1]] = {"low": node - width, "high": node + width}
    return {**scalars, "ci": ci}


def write_init(adir: Path, family: str, scalars: dict, meta: dict, keys: list[str]) -> None:
    """The untrained control's JSON (analysis/init/<family>.json), as the analysis job writes it."""
    write_result(adir / "init", family, MetricResult(_ci(scalars, keys)), meta)


def _write_run(reg: Registry, run_id: str, trend: int, rng: np.random.Generator, skip_tasks=()) -> None:
    spec, out = reg.runs[run_id], reg.run_dir(run_id)
    out.mkdir(parents=True)
    run_config = reg.run_config(run_id)
    run_config.save(out / "run.yaml")
    L, d = spec.model.n_layers, spec.model.d_model
    s = strength(reg, run_id) ** trend  # variance factor; "usefulness" moves the other way
    steps = spec.train.stop_after or spec.train.steps
    (out / "summary.json").write_text(json.dumps({"run_id": run_id, "status": "completed", "steps_done": steps,
                                                  "final_val_loss": 5.0 + 0.1 * s,
                                                  "params": run_config.model.param_counts()}))
    step = np.arange(0, steps + 1)
    shape = 1 + step / steps * np.exp(-step / steps)
    rows = [{"step": t, "layer": l, "out_var": (10 * s * shape[t] if t else 1.0 + 0.01 * rng.uniform()) * (l + 1) / L,
             "attn_out_var": 0.1 * (l + 1) * s, "ffn_out_var": 0.2 * (l + 1) * s, "var_pre": 10 * s * shape[t],
             "var_post": 1.0}
            for t in step for l in range(L)]
    pd.DataFrame(rows).to_parquet(out / "variance_log.parquet")
    if spec.group == "sublayer":
        krows = [{"step": t, "layer": l, "kurtosis": 3 + l * s, "kurt_p50": 3.0, "kurt_p90": 4.0, "kurt_p99": 6 + l,
                  "kurt_max": 20.0} for t in step[::2] for l in range(L)]
        pd.DataFrame(krows).to_parquet(out / "kurtosis_log.parquet")
    useful = min(1.0, 0.6 * s ** -0.5) if spec.group in ("depth", "moe", "gqa", "lns") else 0.8  # no ties in a sweep
    analyses = set(reg.analyses(run_id))  # the union over the run and its aliases
    meta = {"run_id": run_id, "n_layers": L, "d_model": d}
    adir = out / "analysis"
    if "causal" in analyses:
        C = np.triu(rng.uniform(0, 0.4 / s, (L, L)), 1)
        table = pd.DataFrame([{"s": i, "l": j, "causal": C[i, j]} for i in range(L) for j in range(i + 1, L)])
        write_result(adir, "causal", MetricResult(_ci({"causal_global": float(C[np.triu_indices(L, 1)].mean())},
                                                      ["causal_global"]), table), meta)
        write_init(adir, "causal", {"causal_global": 0.5 + 0.01 * rng.uniform()}, meta, ["causal_global"])
    if "permutation" in analyses:
        table = pd.DataFrame([{"i": i, "j": j, "loss": 5.0, "permutation": 0.5 / s * rng.uniform(0.5, 1.5)}
                              for i in range(L) for j in range(i + 1, L)])
        write_result(adir, "permutation", MetricResult(_ci({"permutation_global": float(table["permutation"].mean()),
                                                            "baseline_loss": 5.0}, ["permutation_global"]), table), meta)
        write_init(adir, "permutation", {"permutation_global": 0.01 * rng.uniform()}, meta, ["permutation_global"])
    if "usefulness" in analyses:
        n_useful = int(round(useful * L))
        ratio = np.where(np.arange(L) < n_useful, 1.3, 1.02)
        table = pd.DataFrame({"variant": "correct", "layer": np.arange(L), "loss_lin": 5 * ratio,
                              "loss_increase": 5 * ratio - 5, "ratio": ratio, "useful": ratio > 1.1, "ridge": False})
        n_released = min(L, n_useful + 1)  # the released code's map (D1) keeps one more layer useful
        ceiling = np.full(L, 1.5)
        score = float(((ratio - 1) / (ceiling - 1)).mean())
        keys = ["usefulness", "usefulness_transpose_bug", "normalised_score"]
        write_result(adir, "usefulness", MetricResult(_ci({
            "usefulness": n_useful / L, "effective_layers": n_useful, "wasted_layers": L - n_useful,
            "baseline_loss": 5.0, "usefulness_transpose_bug": n_released / L,
            "effective_layers_transpose_bug": n_released, "ratio": ratio.tolist(), "ceiling": ceiling.tolist(),
            "ceiling_max": float(ceiling.max()), "normalised_score": score, "floor": False}, keys, 0.02), table), meta)
        write_init(adir, "usefulness", {"usefulness": 0.0, "usefulness_transpose_bug": 0.0,
                                        "normalised_score": 0.01 * rng.uniform(), "floor": False}, meta, keys)
    if "perplexity" in analyses:
        write_result(adir, "perplexity", MetricResult({"loss": 5 + 0.1 * s, "ppl": float(np.exp(5 + 0.1 * s))}), meta)
    if "jacobian" in analyses:
        dev = 0.01 * s * np.linspace(1, 0.2, L)
        layers = sorted({min(max(x, 0), L - 1) for x in (L - 2, 1, 8, 16, 24, 30)})
        arrays = {f"layer{x:02d}": np.eye(d) + rng.normal(0, 0.05 * s, (d, d)) for x in layers}
        write_result(adir, "jacobian", MetricResult({"deviation_mean": float(dev.mean())},
                                                    pd.DataFrame({"layer": np.arange(L), "deviation": dev}), arrays), meta)
    if "weight_sparsity" in analyses:
        lam = spec.labels["weight_decay"]
        eps = [1e-2, 1e-3, 1e-4]
        frac = {e: min(1.0, 0.1 * e * 1e3 * (1 + lam) ** trend / 10) for e in eps}
        table = pd.DataFrame([{"subset": "all", "eps": e, "sparsity": f, "n_params": 1000} for e, f in frac.items()])
        write_result(adir, "weight_sparsity", MetricResult({"sparsity": {"all": {f"{e:g}": f for e, f in frac.items()}}},
                                                           table), meta)
        write_init(adir, "weight_sparsity", {"sparsity": {"all": {f"{e:g}": 0.01 for e in eps}}}, meta, [])
    if "attention" in analyses:
        lengths = reg.config["analysis"]["attention_lengths"]
        T = spec.labels["seq_len"]
        rows = [{"T_e": Te, "layer": l, "head": h, "eps": e,
                 "sparsity": min(1.0, 0.3 + 0.05 * trend * np.log2(T / 256) + 0.1 * np.log10(1e-1 / e) / 4),
                 "entropy": 2.0 - 0.1 * trend * np.log2(T / 256) + 0.2 * np.log2(Te), "entropy_norm": 0.5}
                for Te in lengths for l in range(L) for h in range(2) for e in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)]
        table = pd.DataFrame(rows)
        sp = {str(Te): {f"{e:g}": float(g["sparsity"].mean()) for e, g in table[table["T_e"] == Te].groupby("eps")}
              for Te in lengths}
        ent = {str(Te): float(table[table["T_e"] == Te]["entropy"].mean()) for Te in lengths}
        keys = [("sparsity", str(Te), f"{e:g}") for Te in lengths for e in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)]
        write_result(adir, "attention", MetricResult(_ci({"lengths": lengths, "sparsity": sp, "entropy": ent}, keys),
                                                     table), meta)
        write_init(adir, "attention", {"sparsity": {str(Te): {f"{e:g}": 0.2 + 0.01 * rng.uniform()
                                                              for e in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)}
                                                    for Te in lengths}}, meta, keys)
    if analyses:
        (adir / "suite.json").write_text("{}")
    tasks = [t for t in reg.evaluation_tasks(run_id) if t not in skip_tasks]  # the union over the run and aliases
    if tasks:
        gain = KEPT_GAIN.get(run_id, 16 / L - 1) * trend
        (out / "eval").mkdir()
        scores = [("arc_challenge", "acc_norm", 30.0), ("hellaswag", "acc_norm", 49.0),
                  ("arc_easy", "acc_norm", 55.0), ("mmlu", "acc", 25.0), ("pydoc_cont4", "acc_norm", 35.0)]
        pd.DataFrame([{"task": t, "metric": m, "value": base + gain, "stderr": 1.0, "n": 8}
                      for t, m, base in scores if t in tasks]).to_csv(
            out / "eval" / "downstream.csv", index=False)
