"""The paper's qualitative claims checked against our runs: one verdict per claim (spec §3 E1–E6, §5).

Each claim is a statistic computed the same way from our results (`ours`) and from the paper's numbers in
config/reference (`paper`; NaN where the paper gives a direction but no digitized values, e.g. Fig 4b–d, 5b–d).
Verdicts:
- sweep trends (a metric along depth L, λ, T or G): Spearman ρ over the runs with finite values; "reproduced"
  iff ρ has the paper's sign and |ρ| ≥ RHO_MIN = 0.5; "not enough runs" with fewer than 3 finite points;
- pairwise ratios / differences (MQA vs MHA, MoE vs dense, ablation A8 vs A1): "reproduced" iff the direction
  matches (ratio > 1, difference > 0); "not enough runs" unless both values are finite.
Last-layer variance (M1, Var(x_L) pre-norm) is compared at a common step: the runs of one comparison are cut at
the shortest run's last logged step (as Figs 5a and 7 align them) and averaged over the last 10% of the logged
points up to it (the convention of collect's `last_layer.final_mean`). The paper's variance values are the
digitized anchors (variance_anchors.csv: `end`, or `at` 2,384 steps for Fig 5a).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import write_bytes_atomic, write_csv_atomic
from ..collect import last_layer_curve, tail_mean
from .data import Results, depth_arms, spearman
from .reference import load_reference

RHO_MIN = 0.5  # |Spearman ρ| needed for a sweep trend
MIN_TREND_POINTS = 3
REPRODUCED, NOT_REPRODUCED, NOT_ENOUGH = "reproduced", "not reproduced", "not enough runs"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_ENOUGH)
COLUMNS = ["claim_id", "claim", "group", "statistic", "criterion", "ours", "paper", "verdict", "runs", "detail"]
EPS = f"{1e-3:g}"  # threshold ε of the M7/M8 claims (the paper's middle panel, spec §2 [CHOICE])


# --- values -----------------------------------------------------------------------------------------------
def aligned_last_variance(res: Results, run_ids: list[str]) -> tuple[dict[str, float], int | None]:
    """M1 Var(x_L) per run at the common step (the shortest run's last logged step), mean of the last 10%."""
    step = res.common_step(run_ids)
    out = {}
    for run in run_ids:
        log = res.variance(run) if step is not None else None
        part = last_layer_curve(log) if log is not None and not log.empty else pd.DataFrame(columns=["step", "value"])
        part = part[part["step"] <= step]["value"] if step is not None else part["value"]
        out[run] = tail_mean(part) if len(part) else math.nan
    return out, step


def average_accuracy(res: Results, run_id: str) -> float:
    """Fig 1's average accuracy: mean of ARC-Challenge and HellaSwag acc_norm (M12, ×100)."""
    return (res.value(run_id, "eval", "arc_challenge.acc_norm") + res.value(run_id, "eval", "hellaswag.acc_norm")) / 2


def _anchor(anchors: pd.DataFrame, figure: str, run: str, quantity: str) -> float:
    rows = anchors[(anchors["figure"].astype(str) == figure) & (anchors["run"] == run)
                   & (anchors["quantity"] == quantity)]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan


def _paper_trend(anchors: pd.DataFrame, figure: str, quantity: str) -> float:
    """Spearman ρ of the paper's anchors of `figure` against the sweep value in the run name (depth-L12 -> 12)."""
    rows = anchors[(anchors["figure"].astype(str) == figure) & (anchors["quantity"] == quantity)]
    x = [float(re.search(r"([0-9.]+)$", run).group(1)) for run in rows["run"]]
    return spearman(x, rows["value"].astype(float).tolist())


# --- verdict rows -----------------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.4g}"


def trend_claim(claim_id: str, claim: str, group: str, statistic: str, sign: int, runs: pd.DataFrame,
                x_col: str, y: dict[str, float], paper: float, note: str = "") -> dict:
    """A sweep claim: Spearman ρ of y against the run label `x_col`, expected sign `sign`."""
    x = runs[x_col].astype(float).tolist() if x_col in runs else [math.nan] * len(runs)
    points = [(r, lab, xi, y.get(r, math.nan)) for r, lab, xi in zip(runs["run_id"], runs["label"], x)]
    ok = [p for p in points if np.isfinite(p[2]) and np.isfinite(p[3])]
    rho = spearman([p[2] for p in ok], [p[3] for p in ok])
    if len(ok) < MIN_TREND_POINTS:
        verdict = NOT_ENOUGH
    else:
        verdict = REPRODUCED if np.isfinite(rho) and sign * rho >= RHO_MIN else NOT_REPRODUCED
    detail = ", ".join(f"{lab}: {_fmt(v)}" for _, lab, _, v in points) or "no runs"
    return {"claim_id": claim_id, "claim": claim, "group": group, "statistic": statistic,
            "criterion": f"ρ {'≥' if sign > 0 else '≤'} {sign * RHO_MIN:g}", "ours": rho, "paper": paper,
            "verdict": verdict, "runs": ", ".join(p[0] for p in ok), "detail": detail + (f"; {note}" if note else "")}


def pair_claim(claim_id: str, claim: str, group: str, statistic: str, kind: str, a: tuple[str, float],
               b: tuple[str, float], paper: float, note: str = "") -> dict:
    """A pairwise claim: a/b > 1 (kind 'ratio') or a − b > 0 (kind 'difference')."""
    (run_a, va), (run_b, vb) = a, b
    enough = np.isfinite(va) and np.isfinite(vb)
    with np.errstate(divide="ignore", invalid="ignore"):
        ours = float(np.float64(va) / vb if kind == "ratio" else np.float64(va) - vb) if enough else math.nan
    null = 1.0 if kind == "ratio" else 0.0
    verdict = NOT_ENOUGH if not enough else REPRODUCED if ours > null else NOT_REPRODUCED
    detail = f"{run_a}: {_fmt(va)}, {run_b}: {_fmt(vb)}" + (f"; {note}" if note else "")
    return {"claim_id": claim_id, "claim": claim, "group": group, "statistic": statistic,
            "criterion": f"{kind} > {null:g}", "ours": ours, "paper": paper, "verdict": verdict,
            "runs": ", ".join(r for r, v in (a, b) if np.isfinite(v)), "detail": detail}


# --- the claims -------------------------------------------------------------------------------------------
def _depth_claims(res: Results, anchors: pd.DataFrame, fig2c: pd.DataFrame) -> list[dict]:
    """E1 (Fig 2a, 2c; Table 1): variance rises, usefulness / causal / permutation scores fall with depth.

    Usefulness is checked twice (spec M6, D1): with the correct linear map and with the released code's map.
    """
    runs = res.runs("depth")
    ids = runs["run_id"].tolist()
    var, step = aligned_last_variance(res, ids)
    rows = [trend_claim("E1-variance", "Last-layer variance grows with depth (Fig 2a)", "depth",
                        "Spearman ρ(L, Var(x_L))", +1, runs, "label_depth", var, _paper_trend(anchors, "2a", "end"),
                        f"Var at step {step}" if step else "")]
    for claim_id, metric, (source, key), name, note in (
            ("E1-usefulness", "usefulness", ("usefulness", "usefulness"), "U", ""),
            ("E1-usefulness-released", "usefulness", ("usefulness", "usefulness_transpose_bug"), "U_released",
             "M6 with the released code's map x Wᵀ + b (spec D1), the map behind the paper's numbers"),
            ("E1-causal", "causal", ("causal", "causal_global"), "C_global", ""),
            ("E1-permutation", "permutation", ("permutation", "permutation_global"), "P_global", "")):
        y = {r: res.value(r, source, key) for r in ids}
        claim = f"{metric.capitalize()} score falls with depth (Fig 2c{', released code, D1' if note else ''})"
        rows.append(trend_claim(claim_id, claim, "depth", f"Spearman ρ(L, {name})", -1, runs, "label_depth", y,
                                spearman(fig2c["depth"].tolist(), fig2c[metric].tolist()), note))
    return rows


def _weight_decay_claims(res: Results, anchors: pd.DataFrame) -> list[dict]:
    """E2 (Fig 4): variance falls and weight sparsity (M7, all parameters) rises as λ grows."""
    runs = res.runs("weight_decay")
    ids = runs["run_id"].tolist()
    var, step = aligned_last_variance(res, ids)
    sparsity = {r: res.value(r, "weight_sparsity", f"sparsity.all.{EPS}") for r in ids}
    return [trend_claim("E2-variance", "Stronger weight decay lowers last-layer variance (Fig 4a)", "weight_decay",
                        "Spearman ρ(λ, Var(x_L))", -1, runs, "label_weight_decay", var,
                        _paper_trend(anchors, "4a", "end"), f"Var at step {step}" if step else ""),
            trend_claim("E2-weight-sparsity", "Stronger weight decay raises weight sparsity (Fig 4b–d)",
                        "weight_decay", f"Spearman ρ(λ, S_ε(θ)), ε={EPS}", +1, runs, "label_weight_decay",
                        sparsity,
                        math.nan, "paper: direction only (Fig 4b–d not digitized)")]


def _seqlen_claims(res: Results, anchors: pd.DataFrame) -> list[dict]:
    """E3 (Fig 5): attention sparsity (M8, longest T_e) rises and aligned variance falls as training T grows."""
    runs = res.runs("seqlen")
    ids = runs["run_id"].tolist()
    t_e = max(res.attention_lengths(ids), default=None)
    sparsity = {r: res.value(r, "attention", f"sparsity.{t_e}.{EPS}") for r in ids}
    var, step = aligned_last_variance(res, ids)
    return [trend_claim("E3-attention-sparsity", "Longer training context raises attention sparsity (Fig 5b–d)",
                        "seqlen", f"Spearman ρ(T, S_ε(attn)), ε={EPS}, longest T_e", +1, runs, "label_seq_len",
                        sparsity, math.nan, f"T_e = {t_e}; paper: direction only (Fig 5b–d not digitized)"),
            trend_claim("E3-variance", "Longer training context lowers last-layer variance (Fig 5a)", "seqlen",
                        "Spearman ρ(T, Var(x_L)) at the shortest run's step", -1, runs, "label_seq_len", var,
                        _paper_trend(anchors, "5a", "at"), f"Var at step {step}" if step else "")]


def _gqa_claims(res: Results, anchors: pd.DataFrame) -> list[dict]:
    """E4 (Fig 7): variance falls as G grows; MQA (G=16) ≈ 2× lower than MHA (G=1)."""
    runs = res.runs("gqa")
    ids = runs["run_id"].tolist()
    var, step = aligned_last_variance(res, ids)
    at = f"Var at step {step}" if step else ""
    paper_ratio = _anchor(anchors, "7", "gqa-G1", "end") / _anchor(anchors, "7", "gqa-G16", "end")
    return [trend_claim("E4-variance", "Larger GQA group size lowers last-layer variance (Fig 7)", "gqa",
                        "Spearman ρ(G, Var(x_L))", -1, runs, "label_group_size", var,
                        _paper_trend(anchors, "7", "end"), at),
            pair_claim("E4-mqa-vs-mha", "MQA has ≈2× lower last-layer variance than MHA (Fig 7)", "gqa",
                       "Var(G=1) / Var(G=16)", "ratio", ("gqa-G1", var.get("gqa-G1", math.nan)),
                       ("gqa-G16", var.get("gqa-G16", math.nan)), paper_ratio, at)]


def _moe_claims(res: Results, anchors: pd.DataFrame, table5: pd.DataFrame) -> list[dict]:
    """E5 (Fig 8, Table 5): at each size MoE has lower variance (paper ≈6× / ≈3×) and higher usefulness."""
    runs = res.runs("moe")
    paper_u = dict(zip(table5["model"], table5["usefulness"].astype(float)))
    rows = []
    pairs = (("400M", "8a", "Dense-400M", "MoE-2BA400M"), ("1B", "8b", "Dense-1B", "MoE-7BA1B"))
    for size, figure, dense, moe in pairs:
        pick = {name: runs[runs["label"] == name]["run_id"].tolist() for name in (dense, moe)}
        ids = [r for name in (dense, moe) for r in pick[name][:1]]
        var, step = aligned_last_variance(res, ids)
        run_d, run_m = (pick[name][0] if pick[name] else name for name in (dense, moe))
        paper_ratio = _anchor(anchors, figure, dense, "end") / _anchor(anchors, figure, moe, "end")
        rows.append(pair_claim(f"E5-variance-{size}", f"MoE lowers last-layer variance vs dense at {size} active "
                               f"(Fig {figure})", "moe", f"Var({dense}) / Var({moe})", "ratio",
                               (run_d, var.get(run_d, math.nan)), (run_m, var.get(run_m, math.nan)), paper_ratio,
                               f"Var at step {step}" if step else ""))
        rows.append(pair_claim(f"E5-usefulness-{size}", f"MoE has higher usefulness than dense at {size} (Table 5)",
                               "moe", f"U({moe}) − U({dense})", "difference",
                               (run_m, res.value(run_m, "usefulness", "usefulness")),
                               (run_d, res.value(run_d, "usefulness", "usefulness")),
                               paper_u.get(moe, math.nan) - paper_u.get(dense, math.nan)))
    return rows


def _ablation_claim(res: Results, fig1: pd.DataFrame) -> dict:
    """E6 (Fig 1): the kept sparsity ingredients (A8) beat the L=32 baseline (A1) in average accuracy."""
    acc = dict(zip(fig1["id"], fig1["avg_acc_arcc_hellaswag"].astype(float)))
    ids = set(res.runs("ablation")["run_id"])
    value = {r: average_accuracy(res, r) if r in ids else math.nan for r in ("abl-A8", "abl-A1")}
    return pair_claim("E6-accuracy", "The sparsity recipe raises average accuracy over the L=32 baseline (Fig 1)",
                      "ablation", "Acc(A8) − Acc(A1), Acc = mean(ARC-C, HellaSwag acc_norm)", "difference",
                      ("abl-A8", value["abl-A8"]), ("abl-A1", value["abl-A1"]), acc["A8"] - acc["A1"])


def evaluate_claims(res: Results, ref_dir: Path) -> pd.DataFrame:
    """One row per claim (COLUMNS): the statistic on our runs and on the paper's numbers, and the verdict."""
    ref_dir = Path(ref_dir)
    anchors = load_reference(ref_dir, "variance_anchors")
    rows = [*_depth_claims(res, anchors, load_reference(ref_dir, "fig2c_depth_scores")),
            *_weight_decay_claims(res, anchors),
            *_seqlen_claims(res, anchors),
            *_gqa_claims(res, anchors),
            *_moe_claims(res, anchors, load_reference(ref_dir, "table5_moe")),
            _ablation_claim(res, load_reference(ref_dir, "fig1_ablation"))]
    return pd.DataFrame(rows, columns=COLUMNS)


def claims_markdown(claims: pd.DataFrame, scale: str) -> str:
    """Title, scale and verdict rule, the table of claims, and the count of each verdict."""
    def cell(value) -> str:
        return (_fmt(value) if isinstance(value, float) else str(value)).replace("|", "\\|")
    lines = ["# Claims of the paper: reproduction verdicts", "",
             f"Scale: {scale}. Sweep trends are reproduced when Spearman ρ has the paper's sign and "
             f"|ρ| ≥ {RHO_MIN:g} (at least {MIN_TREND_POINTS} runs); ratios and differences when their direction "
             "matches (both runs needed); `paper` is the same statistic on the paper's numbers (– where it gives "
             "only a direction).", "",
             "| " + " | ".join(claims.columns) + " |", "|" + "---|" * len(claims.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in claims.itertuples(index=False)]
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
LNS_DEPTHS = (12, 16, 24, 32)  # the depth sweep both arms train (E1 and group lns)
LNS_SCORE_CLAIMS = (  # (claim id, score, (source, metric)): LNS − Pre-LN at the deepest model, L = 32
    ("X2-causal-L32", "causal", ("causal", "causal_global")),
    ("X2-permutation-L32", "permutation", ("permutation", "permutation_global")),
    ("X2-usefulness-L32", "usefulness", ("usefulness", "usefulness")),
)
BEYOND_TITLE = "# Beyond the paper: LayerNorm Scaling vs Pre-LN (not claims of the paper)"
NOT_IN_PAPER = "not a claim of the paper, which never trains LNS"


def _lns_claims(res: Results) -> list[dict]:
    """X1: Var(x_L) of Pre-LN / LNS > 1 at each depth (aligned as E1's); X2: LNS − Pre-LN scores > 0 at L = 32."""
    runs = {(r.depth, r.arm): r.run_id for r in depth_arms(res).itertuples()}
    pre = {L: runs.get((L, "Pre-LN"), f"depth-L{L}") for L in LNS_DEPTHS}
    lns = {L: runs.get((L, "LNS"), f"lns-L{L}") for L in LNS_DEPTHS}
    rows = []
    for L in LNS_DEPTHS:
        var, step = aligned_last_variance(res, [r for r in (pre[L], lns[L]) if r in runs.values()])
        rows.append(pair_claim(f"X1-variance-L{L}", f"LNS lowers last-layer variance vs Pre-LN at L={L}", "lns",
                               f"Var(Pre-LN) / Var(LNS), L={L}", "ratio", (pre[L], var.get(pre[L], math.nan)),
                               (lns[L], var.get(lns[L], math.nan)), math.nan,
                               (f"Var at step {step}; " if step else "") + NOT_IN_PAPER))
    L = max(LNS_DEPTHS)
    for claim_id, score, key in LNS_SCORE_CLAIMS:
        rows.append(pair_claim(claim_id, f"LNS raises the {score} score vs Pre-LN at L={L}", "lns",
                               f"{score}(LNS) − {score}(Pre-LN), L={L}", "difference",
                               (lns[L], res.value(lns[L], *key)), (pre[L], res.value(pre[L], *key)), math.nan,
                               NOT_IN_PAPER))
    return rows


def write_beyond_claims(res: Results, out_md: Path, out_csv: Path) -> pd.DataFrame:
    """The LNS claims (X1, X2) with the paper claims' verdict rule, written atomically as Markdown and CSV."""
    claims = pd.DataFrame(_lns_claims(res), columns=COLUMNS)
    scales = res.summary["scale"].dropna().astype(str).unique() if "scale" in res.summary else []
    text = claims_markdown(claims, ", ".join(scales) or "unknown").splitlines()
    text[0] = BEYOND_TITLE  # the verdict rule and table below are the paper claims'
    text[2] += " Here `paper` stays empty: the paper never trains LNS."
    write_csv_atomic(out_csv, claims)
    write_bytes_atomic(out_md, ("\n".join(text) + "\n").encode())
    return claims
