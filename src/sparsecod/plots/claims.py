"""The paper's qualitative claims checked against our runs: one verdict per claim (protocol §3 E1–E6, §5).

The claims are a declarative list (`CLAIMS`): each names the statistic it tests (a sweep trend along a run label,
or a ratio / difference of two runs), the measured quantity (`QUANTITIES`: last-layer variance, a score of an
analysis JSON, an accuracy), the paper's direction and how to read the paper's own number from config/reference.
A new claim is one more `Claim(...)` entry.

For every claim the same statistic is computed on the trained runs (`ours`, with its interval and p-value) and on
their untrained step-0 controls (`init_value`: same seed, same windows; the variance at step 0 of the training log),
and `sparsecod.stats.decide` gives the verdict and its reason (the rule is stated there, once):
- trends use every seed of every run as a point of an exact permutation test of Spearman's ρ; the change from init
  is tested with trained − init per point (log scale for variance);
- pairs match seeds by index: a t-test across seeds, or with one seed a z-test from the window (or step) bootstrap
  intervals of both values (ratios on the log scale).
Last-layer variance (M1, Var(x_L) pre-norm) is compared at a common step after warm-up: runs that end inside their
warm-up are left out, the rest are cut at the shortest remaining run's last logged step and averaged over the last
10% (at least 5) of their logged points after warm-up (collect's `last_layer.final_mean` convention, with a floor
of 5 points so that short runs have a spread); the interval of a one-seed value is the bootstrap interval of that
mean. The paper's variance values are the digitized anchors
(variance_anchors.csv: `end`, or `at` 2,384 steps for Fig 5a).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..fileio import write_bytes_atomic, write_csv_atomic
from ..metrics.variance_curve import last_layer_curve
from .data import PAPER_ACCURACY_TASKS, Results, spearman
from .reference import load_reference

MIN_TREND_RUNS = 3
REPRODUCED, CONTRADICTED, INCONCLUSIVE = stats.REPRODUCED, stats.CONTRADICTED, stats.INCONCLUSIVE
VERDICTS = stats.VERDICTS
COLUMNS = ["claim_id", "verdict", "reason", "ours", "ci_low", "ci_high", "p_value", "init_value", "paper",
           "p_beyond_init", "claim", "group", "statistic", "test", "n_runs", "n_seeds", "runs", "detail"]
EPS = f"{1e-3:g}"  # threshold ε of the M7/M8 claims (the paper's middle panel, protocol §2 [CHOICE])
TAIL, TAIL_MIN = 0.1, 5  # M1 values: mean over the last 10% (at least 5) of the logged points after warm-up


# --- measured quantities ----------------------------------------------------------------------------------
@dataclass
class Measure:
    """One run's quantity: a value per seed (seed order), the interval of the first seed's value (window or step
    bootstrap), the same at init (step-0 weights) and why the quantity cannot move (floor), if so."""

    seeds: list[float]
    low: float = math.nan
    high: float = math.nan
    init: list[float] = field(default_factory=list)
    init_low: float = math.nan
    init_high: float = math.nan
    floor: str | None = None
    note: str = ""

    @property
    def value(self) -> float:
        finite = [v for v in self.seeds if np.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan


Quantity = Callable[[Results, list[str]], tuple[dict[str, Measure], str]]  # (run -> measure, note)


def _warmup(res: Results, run_id: str) -> int:
    return int(((res.config(run_id).get("train") or {}).get("warmup_steps")) or 0)


def variance_quantity(res: Results, run_ids: list[str]) -> tuple[dict[str, Measure], str]:
    """M1 Var(x_L) per run and seed at the common step after warm-up (module docstring); init = step 0."""
    curves, ends = {}, {}
    for run in run_ids:
        for rep in res.replicas(run):
            log = res.variance(rep)
            curve = last_layer_curve(log) if log is not None and not log.empty else None
            if curve is None or curve.empty:
                continue
            curves[rep] = curve
            ends[run] = min(ends.get(run, math.inf), float(curve["step"].iloc[-1]))
    warm = {run: _warmup(res, run) for run in run_ids}
    inside = [r for r in ends if ends[r] <= warm[r]]
    usable = [r for r in ends if r not in inside]
    step = min((ends[r] for r in usable), default=None)
    out = {}
    for run in run_ids:
        reps = res.replicas(run)
        vals, inits, tail_values = [], [], None
        for rep in reps:
            curve = curves.get(rep)
            first = curve[curve["step"] == 0]["value"] if curve is not None else pd.Series(dtype=float)
            inits.append(float(first.iloc[0]) if len(first) else math.nan)
            if curve is None or run not in usable:
                vals.append(math.nan)
                continue
            part = curve[(curve["step"] > warm[run]) & (curve["step"] <= step)]["value"]
            tail = part.iloc[-max(TAIL_MIN, int(len(part) * TAIL)):] if len(part) else part
            vals.append(float(tail.mean()) if len(tail) else math.nan)
            tail_values = tail.tolist() if tail_values is None else tail_values
        low, high = stats.mean_interval(tail_values or [])
        out[run] = Measure(vals, low, high, inits, inits[0] if inits else math.nan, inits[0] if inits else math.nan,
                           note="ends inside its warm-up" if run in inside else "")
    note = f"Var at step {int(step)}" if step is not None else ""
    if inside:
        note += ("; " if note else "") + f"left out (end inside warm-up): {', '.join(inside)}"
    return out, note


def analysis_quantity(source: str, key: str, floor_key: str | None = None) -> Quantity:
    """A scalar of `analysis/<source>.json` (trained) and `analysis/init/<source>.json` (step 0), its window
    bootstrap interval `ci.<key>.{low,high}`; `floor_key`: a usefulness JSON flag saying no block can pass τ."""
    def quantity(res: Results, run_ids: list[str]) -> tuple[dict[str, Measure], str]:
        out = {}
        for run in run_ids:
            reps = res.replicas(run)
            m = Measure([res.value(r, source, key) for r in reps],
                        res.value(reps[0], source, f"ci.{key}.low"), res.value(reps[0], source, f"ci.{key}.high"),
                        [res.value(r, f"{source}@init", key) for r in reps],
                        res.value(reps[0], f"{source}@init", f"ci.{key}.low"),
                        res.value(reps[0], f"{source}@init", f"ci.{key}.high"))
            if floor_key is not None and res.value(reps[0], source, floor_key) == 1:
                m.floor = f"{run}: the mean-vector ceiling of every block is below 1 + τ"
            out[run] = m
        return out, ""
    return quantity


def attention_quantity(res: Results, run_ids: list[str]) -> tuple[dict[str, Measure], str]:
    """M8 S_ε(attn) at the longest evaluation length T_e with values, ε = EPS."""
    t_e = max(res.attention_lengths(run_ids), default=None)
    if t_e is None:
        return {r: Measure([math.nan]) for r in run_ids}, ""
    out, _ = analysis_quantity("attention", f"sparsity.{t_e}.{EPS}")(res, run_ids)
    return out, f"T_e = {t_e}"


def accuracy_quantity(res: Results, run_ids: list[str]) -> tuple[dict[str, Measure], str]:
    """Fig 1's average accuracy: mean acc_norm (M12, ×100) of `Results.accuracy_tasks` (ARC-Challenge and HellaSwag,
    or the tasks evaluated instead, e.g. the embedded pydoc_cont4); interval from their standard errors (lm-eval's,
    combined as independent)."""
    tasks = res.accuracy_tasks(run_ids)
    out = {}
    for run in run_ids:
        reps = res.replicas(run)
        vals = [float(np.mean([res.value(r, "eval", f"{t}.acc_norm") for t in tasks])) if tasks else math.nan
                for r in reps]
        se = math.hypot(*(res.value(reps[0], "eval", f"{t}.acc_norm_stderr") for t in tasks)) / max(len(tasks), 1)
        z = 1.959964
        out[run] = Measure(vals, vals[0] - z * se, vals[0] + z * se)
    paper = "" if tasks == PAPER_ACCURACY_TASKS else "; paper: ARC-C/HellaSwag"
    return out, f"Acc over {', '.join(tasks) or 'no evaluated task'}{paper}; init: chance accuracy (not evaluated)"


def statistic_text(claim: "Claim", res: Results, run_ids: list[str]) -> str:
    """The claim's statistic; `{tasks}` names the accuracy tasks actually averaged on these runs (protocol E6)."""
    if "{tasks}" not in claim.statistic:
        return claim.statistic
    return claim.statistic.format(tasks=", ".join(res.accuracy_tasks(run_ids)) or "no evaluated task")


QUANTITIES: dict[str, Quantity] = {
    "variance": variance_quantity,
    "usefulness": analysis_quantity("usefulness", "usefulness", "floor"),
    "usefulness_released": analysis_quantity("usefulness", "usefulness_transpose_bug", "floor"),
    "usefulness_score": analysis_quantity("usefulness", "normalised_score"),
    "causal": analysis_quantity("causal", "causal_global"),
    "permutation": analysis_quantity("permutation", "permutation_global"),
    "weight_sparsity": analysis_quantity("weight_sparsity", f"sparsity.all.{EPS}"),
    "attention_sparsity": attention_quantity,
    "accuracy": accuracy_quantity,
}
LOG_SCALE = {"variance"}  # positive quantities compared as ratios: changes from init on the log scale


# --- the paper's numbers ----------------------------------------------------------------------------------
@dataclass
class Reference:
    """The reference tables a claim's `paper` statistic reads."""

    anchors: pd.DataFrame
    fig2c: pd.DataFrame
    table5: pd.DataFrame
    fig1: pd.DataFrame

    @classmethod
    def load(cls, ref_dir: Path) -> "Reference":
        return cls(*(load_reference(Path(ref_dir), n) for n in
                     ("variance_anchors", "fig2c_depth_scores", "table5_moe", "fig1_ablation")))

    def anchor(self, figure: str, run: str, quantity: str) -> float:
        a = self.anchors
        rows = a[(a["figure"].astype(str) == figure) & (a["run"] == run) & (a["quantity"] == quantity)]
        return float(rows["value"].iloc[0]) if len(rows) else math.nan

    def trend(self, figure: str, quantity: str) -> float:
        """Spearman ρ of the anchors of `figure` against the sweep value in the run name (depth-L12 -> 12)."""
        a = self.anchors
        rows = a[(a["figure"].astype(str) == figure) & (a["quantity"] == quantity)]
        x = [float(re.search(r"([0-9.]+)$", run).group(1)) for run in rows["run"]]
        return spearman(x, rows["value"].astype(float).tolist())

    def fig2c_trend(self, metric: str) -> float:
        return spearman(self.fig2c["depth"].tolist(), self.fig2c[metric].tolist())

    def usefulness_gap(self, moe: str, dense: str) -> float:
        u = dict(zip(self.table5["model"], self.table5["usefulness"].astype(float)))
        return u.get(moe, math.nan) - u.get(dense, math.nan)

    def accuracy_gap(self, a: str, b: str) -> float:
        acc = dict(zip(self.fig1["id"], self.fig1["avg_acc_arcc_hellaswag"].astype(float)))
        return acc[a] - acc[b]


# --- the claims -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """One claim. kind 'trend': Spearman ρ(label `x`, quantity) with the paper's sign; 'ratio' / 'difference':
    quantity(a) / quantity(b) > 1 or quantity(a) − quantity(b) > 0 for the runs named by legend label (or run id) `pair`;
    `group` may join groups with '+' (the beyond-the-paper pairs span E1 and lns).
    `control`: whether the untrained control applies (False: accuracy, not evaluated at init)."""

    claim_id: str
    claim: str
    group: str
    statistic: str
    kind: str
    quantity: str
    paper: Callable[[Reference], float]
    sign: int = 1
    x: str = ""
    pair: tuple[str, str] = ("", "")
    control: bool = True
    note: str = ""


def _nan(_: Reference) -> float:
    return math.nan


CLAIMS: tuple[Claim, ...] = (
    Claim("E1-variance", "Last-layer variance grows with depth (Fig 2a)", "depth", "Spearman ρ(L, Var(x_L))",
          "trend", "variance", lambda r: r.trend("2a", "end"), +1, "label_depth"),
    Claim("E1-usefulness", "Usefulness score falls with depth (Fig 2c)", "depth", "Spearman ρ(L, U)", "trend",
          "usefulness", lambda r: r.fig2c_trend("usefulness"), -1, "label_depth"),
    Claim("E1-usefulness-released", "Usefulness score falls with depth (Fig 2c, transposed map, D1)", "depth",
          "Spearman ρ(L, U_transposed)", "trend", "usefulness_released", lambda r: r.fig2c_trend("usefulness"), -1,
          "label_depth", note="M6 with the released code's map x Wᵀ + b and its last-block target N_f(x_L) "
          "(protocol D1/D2a)"),
    Claim("E1-usefulness-score", "Normalised usefulness falls with depth (continuous M6, not in the paper)", "depth",
          "Spearman ρ(L, mean (r−1)/(ceiling−1))", "trend", "usefulness_score", _nan, -1, "label_depth",
          note="mean over blocks of (r_l − 1)/(c_l − 1), c_l the mean-vector ceiling; paper: no such number"),
    Claim("E1-causal", "Causal score falls with depth (Fig 2c)", "depth", "Spearman ρ(L, C_global)", "trend",
          "causal", lambda r: r.fig2c_trend("causal"), -1, "label_depth"),
    Claim("E1-permutation", "Permutation score falls with depth (Fig 2c)", "depth", "Spearman ρ(L, P_global)",
          "trend", "permutation", lambda r: r.fig2c_trend("permutation"), -1, "label_depth"),
    Claim("E2-variance", "Stronger weight decay lowers last-layer variance (Fig 4a)", "weight_decay",
          "Spearman ρ(λ, Var(x_L))", "trend", "variance", lambda r: r.trend("4a", "end"), -1, "label_weight_decay"),
    Claim("E2-weight-sparsity", "Stronger weight decay raises weight sparsity (Fig 4b–d)", "weight_decay",
          f"Spearman ρ(λ, S_ε(θ)), ε={EPS}", "trend", "weight_sparsity", _nan, +1, "label_weight_decay",
          note="paper: direction only (Fig 4b–d not digitized); expected of decoupled weight decay itself "
          "(every weight shrinks by (1 − ηλ) per step)"),
    Claim("E3-attention-sparsity", "Longer training context raises attention sparsity (Fig 5b–d)", "seqlen",
          f"Spearman ρ(T, S_ε(attn)), ε={EPS}, longest T_e", "trend", "attention_sparsity", _nan, +1,
          "label_seq_len", note="paper: direction only (Fig 5b–d not digitized)"),
    Claim("E3-variance", "Longer training context lowers last-layer variance (Fig 5a)", "seqlen",
          "Spearman ρ(T, Var(x_L)) at the shortest run's step after warm-up", "trend", "variance",
          lambda r: r.trend("5a", "at"), -1, "label_seq_len"),
    Claim("E4-variance", "Larger GQA group size lowers last-layer variance (Fig 7)", "gqa", "Spearman ρ(G, Var(x_L))",
          "trend", "variance", lambda r: r.trend("7", "end"), -1, "label_group_size"),
    Claim("E4-mqa-vs-mha", "MQA has ≈2× lower last-layer variance than MHA (Fig 7)", "gqa", "Var(G=1) / Var(G=16)",
          "ratio", "variance", lambda r: r.anchor("7", "gqa-G1", "end") / r.anchor("7", "gqa-G16", "end"),
          pair=("G=1", "G=16")),
    Claim("E5-variance-400M", "MoE lowers last-layer variance vs dense at 400M active (Fig 8a)", "moe",
          "Var(Dense-400M) / Var(MoE-2BA400M)", "ratio", "variance",
          lambda r: r.anchor("8a", "Dense-400M", "end") / r.anchor("8a", "MoE-2BA400M", "end"),
          pair=("Dense-400M", "MoE-2BA400M")),
    Claim("E5-usefulness-400M", "MoE has higher usefulness than dense at 400M (Table 5)", "moe",
          "U(MoE-2BA400M) − U(Dense-400M)", "difference", "usefulness",
          lambda r: r.usefulness_gap("MoE-2BA400M", "Dense-400M"), pair=("MoE-2BA400M", "Dense-400M")),
    Claim("E5-variance-1B", "MoE lowers last-layer variance vs dense at 1B active (Fig 8b)", "moe",
          "Var(Dense-1B) / Var(MoE-7BA1B)", "ratio", "variance",
          lambda r: r.anchor("8b", "Dense-1B", "end") / r.anchor("8b", "MoE-7BA1B", "end"),
          pair=("Dense-1B", "MoE-7BA1B")),
    Claim("E5-usefulness-1B", "MoE has higher usefulness than dense at 1B (Table 5)", "moe",
          "U(MoE-7BA1B) − U(Dense-1B)", "difference", "usefulness",
          lambda r: r.usefulness_gap("MoE-7BA1B", "Dense-1B"), pair=("MoE-7BA1B", "Dense-1B")),
    Claim("E6-accuracy", "The sparsity recipe raises average accuracy over the L=32 baseline (Fig 1)", "ablation",
          "Acc(A8) − Acc(A1), Acc = mean acc_norm of {tasks}", "difference", "accuracy",
          lambda r: r.accuracy_gap("A8", "A1"), pair=("+MoE", "L=32 baseline"), control=False),
)


# --- evaluation -------------------------------------------------------------------------------------------
def _fmt(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.4g}"


def _diverged(res: Results, run_ids: list[str]) -> list[str]:
    return [rep for run in run_ids for rep in res.replicas(run) if res.value(rep, "train", "diverged") == 1]


def _row(claim: Claim, paper: float, verdict: tuple[str, str], test: stats.Test | None, init_value: float,
         beyond: stats.Test | None, runs: list[str], n_seeds: int, detail: str, statistic: str) -> dict:
    t = test or stats.Test(math.nan, math.nan, math.nan, math.nan, math.nan, 0, "")
    return {"claim_id": claim.claim_id, "verdict": verdict[0], "reason": verdict[1], "ours": t.stat,
            "ci_low": t.low, "ci_high": t.high, "p_value": t.p_agree, "init_value": init_value, "paper": paper,
            "p_beyond_init": beyond.p_agree if beyond else math.nan, "claim": claim.claim, "group": claim.group,
            "statistic": statistic, "test": t.method, "n_runs": len(runs), "n_seeds": n_seeds,
            "runs": ", ".join(runs), "detail": detail}


def trend_claim(claim: Claim, res: Results, paper: float) -> dict:
    """A sweep claim: every (run, seed) a point (label x, value); the exact permutation test of Spearman ρ."""
    runs = res.runs(claim.group)
    x_of = dict(zip(runs["run_id"], runs[claim.x].astype(float))) if claim.x in runs else {}
    ids = [r for r in runs["run_id"] if np.isfinite(x_of.get(r, math.nan))]
    measures, note = QUANTITIES[claim.quantity](res, ids)
    points = [(x_of[r], v, i) for r in ids for v, i in zip(measures[r].seeds,
                                                           measures[r].init + [math.nan] * len(measures[r].seeds))]
    ok = [p for p in points if np.isfinite(p[1])]
    used = [r for r in ids if any(np.isfinite(v) for v in measures[r].seeds)]
    labels = dict(zip(runs["run_id"], runs["label"]))
    detail = ", ".join(f"{labels[r]}: {_fmt(measures[r].value)}" + (f" (init {_fmt(np.nanmean(measures[r].init))})"
                       if measures[r].init and np.isfinite(measures[r].init).any() else "") for r in ids) or "no runs"
    detail = "; ".join(s for s in (detail, note, claim.note) if s)
    n_seeds = max((len(measures[r].seeds) for r in used), default=0)
    missing = floor = None
    test = beyond = None
    init_value, init_holds = math.nan, None
    if len(used) < MIN_TREND_RUNS:
        missing = f"too few runs: {len(used)} with values, {MIN_TREND_RUNS} needed"
        if any(measures[r].note for r in ids):
            missing += " (the others end inside their warm-up)"
    else:
        floors = [measures[r].floor for r in used if measures[r].floor]
        if floors:
            floor = floors[0]
        elif len({p[1] for p in ok}) == 1:
            floor = f"the same value {_fmt(ok[0][1])} in every run"
        test = stats.trend_test([p[0] for p in ok], [p[1] for p in ok], claim.sign)
        init_pts = [p for p in ok if np.isfinite(p[2])]
        if claim.control and len(init_pts) == len(ok):
            init_value = float(stats.spearman_rho(np.array([p[0] for p in ok]), np.array([p[2] for p in ok])))
            init_holds = claim.sign * init_value > 0
            f = np.log if claim.quantity in LOG_SCALE else (lambda v: v)
            with np.errstate(divide="ignore", invalid="ignore"):
                delta = [float(f(p[1]) - f(p[2])) for p in ok]
            if all(np.isfinite(delta)):
                beyond = stats.trend_test([p[0] for p in ok], delta, claim.sign)
    verdict = stats.decide(test, missing, floor, claim.control, init_holds, beyond,
                           f" (ρ_init = {_fmt(init_value)})" if np.isfinite(init_value) else "")
    diverged = _diverged(res, used)
    if diverged:
        verdict = (verdict[0], verdict[1] + f"; diverged: {', '.join(diverged)}")
    return _row(claim, paper, verdict, test, init_value, beyond, used, n_seeds, detail,
                statistic_text(claim, res, ids))


def _pair_stat(kind: str, a: float, b: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(np.float64(a) / b)) if kind == "ratio" else float(np.float64(a) - b)


def _pair_se(kind: str, ma: Measure, mb: Measure, init: bool = False) -> float:
    """Standard error of the one-seed pair statistic from the two values' intervals (log scale for ratios)."""
    parts = []
    for m in (ma, mb):
        lo, hi = (m.init_low, m.init_high) if init else (m.low, m.high)
        v = (m.init[0] if m.init else math.nan) if init else m.seeds[0]
        se = stats.se_from_interval(lo, hi)
        parts.append(se / abs(v) if kind == "ratio" and v else se)
    return float(math.hypot(*parts))


def pair_claim(claim: Claim, res: Results, paper: float) -> dict:
    """A pairwise claim: a/b > 1 (ratio, tested as log a − log b > 0) or a − b > 0 (difference)."""
    runs = pd.concat([res.runs(g) for g in claim.group.split("+")], ignore_index=True)  # "depth+lns": both groups
    by_label = {**dict(zip(runs["run_id"], runs["run_id"])), **dict(zip(runs["label"], runs["run_id"]))}
    ids = [by_label.get(lab) for lab in claim.pair]  # `pair` names legend labels or run ids
    present = [r for r in ids if r is not None]
    measures, note = QUANTITIES[claim.quantity](res, present) if present else ({}, "")
    ma, mb = (measures.get(r) if r else None for r in ids)
    detail = ", ".join(f"{r or lab}: {_fmt(measures[r].value) if r else '–'}" for r, lab in zip(ids, claim.pair))
    detail = "; ".join(s for s in (detail, note, claim.note) if s)
    null = 0.0
    test = beyond = None
    missing = floor = None
    init_value, init_holds = math.nan, None
    k = [i for i in range(min(len(ma.seeds), len(mb.seeds)))
         if np.isfinite(ma.seeds[i]) and np.isfinite(mb.seeds[i])] if ma and mb else []
    used = [r for r in ids if r] if k else []
    to_ours = (lambda s: float(np.exp(s))) if claim.kind == "ratio" else (lambda s: s)
    if not k:
        missing = "too few runs: both runs need a value" + (" (one ends inside its warm-up)"
                                                          if any(m and m.note for m in (ma, mb)) else "")
    else:
        s = [_pair_stat(claim.kind, ma.seeds[i], mb.seeds[i]) for i in k]
        floors = [m.floor for m in (ma, mb) if m.floor]
        floor = floors[0] if floors else None
        if len(k) >= 2:
            test = stats.mean_test(s, +1, null)
        else:
            test = stats.normal_test(s[0], _pair_se(claim.kind, ma, mb), +1, null)
        s0 = [_pair_stat(claim.kind, ma.init[i], mb.init[i]) if i < len(ma.init) and i < len(mb.init) else math.nan
              for i in k]
        if claim.control and all(np.isfinite(s0)):
            init_value = to_ours(float(np.mean(s0)))
            init_holds = float(np.mean(s0)) > null
            delta = [a - b for a, b in zip(s, s0)]
            beyond = stats.mean_test(delta, +1) if len(k) >= 2 else stats.normal_test(
                delta[0], math.hypot(_pair_se(claim.kind, ma, mb), _pair_se(claim.kind, ma, mb, init=True)), +1)
        test = stats.Test(to_ours(test.stat), to_ours(test.low), to_ours(test.high), test.p_agree, test.p_against,
                          test.n, test.method)
    verdict = stats.decide(test, missing, floor, claim.control, init_holds, beyond,
                           f" (init {_fmt(init_value)})" if np.isfinite(init_value) else "")
    diverged = _diverged(res, used)
    if diverged:
        verdict = (verdict[0], verdict[1] + f"; diverged: {', '.join(diverged)}")
    return _row(claim, paper, verdict, test, init_value, beyond, used, len(k), detail,
                statistic_text(claim, res, present))


def evaluate_claims(res: Results, ref_dir: Path, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """One row per claim (COLUMNS): the statistic on our runs, its interval, p-value, init control, the paper's
    number, and the verdict with its reason."""
    ref = Reference.load(Path(ref_dir))
    rows = [(trend_claim if c.kind == "trend" else pair_claim)(c, res, c.paper(ref)) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


MD_COLUMNS = ["claim_id", "verdict", "reason", "ours", "ci_low", "ci_high", "p_value", "init_value", "paper",
              "statistic", "runs"]


def claims_markdown(claims: pd.DataFrame, scale: str) -> str:
    """Title, scale and verdict rule, the table of claims, and the count of each verdict."""
    def cell(value) -> str:
        return (_fmt(value) if isinstance(value, float) else str(value)).replace("|", "\\|")
    lines = ["# Claims of the paper: reproduction verdicts", "",
             f"Scale: {scale}. A claim is reproduced when its one-sided test in the paper's direction has "
             f"p ≤ {stats.ALPHA:g} (sweeps: exact permutation test of Spearman ρ over every run and seed; pairs: "
             "t-test across seeds, or a z-test from bootstrap intervals with one seed) and, where the untrained "
             "(step-0) control already shows the direction, training moved it significantly beyond its init value; "
             f"contradicted when the test against the paper's direction has p ≤ {stats.ALPHA:g}; inconclusive "
             "otherwise, with the reason. `ci_low`–`ci_high`: 95% interval of `ours`; `init_value`: the same "
             "statistic at init; `paper`: on the paper's numbers (– where it gives only a direction).", "",
             "| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in claims[MD_COLUMNS].itertuples(index=False)]
    counts = claims["verdict"].value_counts()
    lines += ["", "Verdicts: " + ", ".join(f"{v}: {int(counts.get(v, 0))}" for v in VERDICTS) + "."]
    return "\n".join(lines) + "\n"


def write_claims(res: Results, ref_dir: Path, out_md: Path, out_csv: Path) -> pd.DataFrame:
    """Evaluate the claims and write them atomically as Markdown (`out_md`) and CSV (`out_csv`)."""
    claims = evaluate_claims(res, ref_dir)
    scales = res.summary["scale"].dropna().astype(str).unique() if "scale" in res.summary else []
    write_csv_atomic(out_csv, claims)
    write_bytes_atomic(out_md, claims_markdown(claims, ", ".join(scales) or "unknown").encode())
    return claims


# --- beyond the paper (issue 19): LayerNorm Scaling vs Pre-LN; ids X…, never claims of the paper ----------------
# Pairs name run ids (E1's Pre-LN `depth-L*` against group lns's `lns-L*`), so they span both groups; the verdict
# rule, intervals and untrained controls are the paper claims' (the init control matters here: LNS scales the
# block inputs from step 0, so a variance gap already present at init is not credited to training).
LNS_DEPTHS = (12, 16, 24, 32)  # the depth sweep both arms train (E1 and group lns)
NOT_IN_PAPER = "not a claim of the paper, which never trains LNS"
BEYOND_CLAIMS: tuple[Claim, ...] = (
    *(Claim(f"X1-variance-L{L}", f"LNS lowers last-layer variance vs Pre-LN at L={L}", "depth+lns",
            f"Var(Pre-LN) / Var(LNS), L={L}", "ratio", "variance", _nan, pair=(f"depth-L{L}", f"lns-L{L}"),
            note=NOT_IN_PAPER) for L in LNS_DEPTHS),
    *(Claim(f"X1-{score}-L32", f"LNS raises the {score} score vs Pre-LN at L=32", "depth+lns",
            f"{score}(LNS) − {score}(Pre-LN), L=32", "difference", score, _nan, pair=("lns-L32", "depth-L32"),
            note=NOT_IN_PAPER) for score in ("causal", "permutation", "usefulness")),
)
BEYOND_TITLE = "# Beyond the paper: LayerNorm Scaling vs Pre-LN (not claims of the paper)"


def write_beyond_claims(res: Results, ref_dir: Path, out_md: Path, out_csv: Path) -> pd.DataFrame:
    """The LNS claims (X1, X2) under the paper claims' verdict rule, written atomically as Markdown and CSV."""
    claims = evaluate_claims(res, ref_dir, BEYOND_CLAIMS)
    scales = res.summary["scale"].dropna().astype(str).unique() if "scale" in res.summary else []
    text = claims_markdown(claims, ", ".join(scales) or "unknown").splitlines()
    text[0] = BEYOND_TITLE  # the verdict rule and table below are the paper claims'
    text[2] += " Here `paper` stays empty: the paper never trains LNS."
    write_csv_atomic(out_csv, claims)
    write_bytes_atomic(out_md, ("\n".join(text) + "\n").encode())
    return claims
