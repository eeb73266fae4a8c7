"""Tables 1–8 of the paper (protocol §4) as CSV, Markdown and LaTeX (booktabs), ours beside the paper's (protocol §5).

Tables 1–5 (E1–E5): one row per run of the group in registry order; for every column `x` of the paper's table
the row holds ours `x`, the paper's `x_paper` (row matched by label: depth L, λ, T, G or model name) and
`x_diff` = ours − paper. Tables 6–8 (E1, E5, E6): the model configuration each run actually used (its run.yaml)
beside the paper's configuration row, plus our non-embedding and active parameter counts (protocol §1.4).
Missing runs, metrics or paper rows leave empty cells; the CSV keeps full precision, .md/.tex are rounded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import write_bytes_atomic, write_csv_atomic
from ..model.config import ModelConfig
from ..stats import seed_interval
from .data import MODEL_NAMES, Results, depth_arms
from .inventory import BEYOND, TABLES
from .reference import load_reference

Getter = Callable[[dict], float]  # of the run config (run.yaml as a dict)


@dataclass(frozen=True)
class Column:
    """One paper column: output name, how to read ours, the reference CSV column, and the display format."""

    name: str
    ours: tuple[str, str] | Getter  # summary (source, metric) or a function of the run config
    ref: str
    fmt: str  # format spec for .md/.tex, or "count" for 1.18B-style numbers


@dataclass(frozen=True)
class ScoreTable:
    """Tables 1–5: a group's runs matched to the paper's rows by `run_key` == reference column `ref_key`."""

    group: str
    ref: str
    run_key: str  # column of `Results.runs(group)`
    ref_key: str
    columns: tuple[Column, ...]


def _config_value(path: str) -> Getter:
    """Getter of a dotted key of the run config (e.g. 'model.n_kv_heads'); NaN when absent."""
    def get(cfg: dict) -> float:
        node = cfg
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return float(node) if isinstance(node, (int, float)) else math.nan
    return get


def _train_tokens(cfg: dict) -> float:
    """Tokens actually trained: steps run × global batch × sequence length (protocol §3)."""
    train = cfg.get("train") or {}
    if not train:
        return math.nan
    return float((train.get("stop_after") or train["steps"]) * train["global_batch"] * train["seq_len"])


def _eval(task: str, name: str, metric: str = "acc_norm") -> Column:
    return Column(name, ("eval", f"{task}.{metric}"), name, ".2f")


PPL = Column("ppl", ("perplexity", "ppl"), "ppl", ".2f")
SCORES = (Column("causal", ("causal", "causal_global"), "causal", ".3f"),
          Column("permutation", ("permutation", "permutation_global"), "permutation", ".3f"),
          Column("usefulness", ("usefulness", "usefulness"), "usefulness", ".3f"),
          Column("effective_layers", ("usefulness", "effective_layers"), "effective_layers_of_16", ".0f"))

SCORE_TABLES = {
    "table1": ScoreTable("depth", "table1_depth", "label_depth", "depth", (
        Column("params", ("train", "params.non_embedding"), "params", "count"),
        Column("effective_layers", ("usefulness", "effective_layers"), "effective_layers", ".0f"),
        Column("wasted_layers", ("usefulness", "wasted_layers"), "wasted_layers", ".0f"),
        # M6 under the released code's map x Wᵀ + b (protocol D1), which produced the paper's numbers
        Column("effective_layers_released", ("usefulness", "effective_layers_transpose_bug"), "effective_layers",
               ".0f"),
        # continuous M6 beside τ (not in the paper): mean (r−1)/(ceiling−1) and the largest mean-vector ceiling;
        # a ceiling ≤ 1.1 means no block can pass τ = 0.1 (E/W at their floor)
        Column("usefulness_normalised", ("usefulness", "normalised_score"), "usefulness_normalised", ".3f"),
        Column("ceiling_max", ("usefulness", "ceiling_max"), "ceiling_max", ".3f"),
        PPL,
        _eval("mmlu", "mmlu_acc", "acc"),
        _eval("arc_challenge", "arc_c_acc_norm"),
        _eval("arc_easy", "arc_e_acc_norm"),
        _eval("hellaswag", "hellaswag_acc_norm"))),
    "table2": ScoreTable("weight_decay", "table2_weight_decay", "label_weight_decay", "weight_decay", (PPL, *SCORES)),
    "table3": ScoreTable("seqlen", "table3_seqlen", "label_seq_len", "seq_len", (PPL, *SCORES)),
    "table4": ScoreTable("gqa", "table4_gqa", "label_group_size", "group_size", (
        Column("kv_heads", _config_value("model.n_kv_heads"), "kv_heads", ".0f"),
        Column("params", ("train", "params.non_embedding"), "params_non_embedding", "count"),
        Column("train_tokens", _train_tokens, "train_tokens", "count"),
        PPL, *SCORES)),
    "table5": ScoreTable("moe", "table5_moe", "label", "model", (PPL, *SCORES)),
}

# Tables 6–8: our run ids -> the paper's configuration row (tables6-8_configs.csv `model`).
CONFIG_TABLES = {
    "table6": ("depth", {f"depth-L{n}": f"depth-L{n}" for n in (12, 16, 24, 32)}),
    "table7": ("moe", dict(MODEL_NAMES)),
    "table8": ("ablation", {"abl-A0": "ablation-L16", **{f"abl-A{i}": "ablation-L32" for i in range(1, 8)},
                            "abl-A8": "ablation-MoE-L32"}),
}


def _moe(cfg: dict) -> dict | None:
    return (cfg.get("model") or {}).get("moe")


def _mlp_inner(cfg: dict) -> float:
    """SwiGLU inner width: d_ff for dense models, the per-expert width h_e for MoE (protocol §1.2–1.3)."""
    moe = _moe(cfg)
    return float(moe["d_expert"]) if moe else _config_value("model.d_ff")(cfg)


def _moe_value(key: str) -> Getter:
    def get(cfg: dict) -> float:
        moe = _moe(cfg)
        return float(moe[key]) if moe else math.nan
    return get


def _shared(cfg: dict) -> float:
    moe = _moe(cfg)
    return float(moe.get("d_shared", 0) > 0) if moe else math.nan


CONFIG_COLUMNS = (
    Column("depth", _config_value("model.n_layers"), "depth", ".0f"),
    Column("hidden", _config_value("model.d_model"), "hidden", ".0f"),
    Column("mlp_inner", _mlp_inner, "mlp_inner", ".0f"),
    Column("q_heads", _config_value("model.n_heads"), "q_heads", ".0f"),
    Column("kv_heads", _config_value("model.n_kv_heads"), "kv_heads", ".0f"),
    Column("experts", _moe_value("n_experts"), "experts", ".0f"),
    Column("active", _moe_value("top_k"), "active", ".0f"),
    Column("shared", _shared, "shared", ".0f"),
    Column("max_train_len", _config_value("train.seq_len"), "max_train_len", ".0f"),
)


def parse_count(value) -> float:
    """'900M', '1.2B', '5.00B' or a number -> float; NaN when empty or unparsable."""
    if isinstance(value, (int, float, np.number)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMB]?)\s*", str(value))
    if not m:
        return math.nan
    return float(Decimal(m.group(1)) * {"": 1, "K": 10**3, "M": 10**6, "B": 10**9}[m.group(2)])


def _same(a, b) -> bool:
    """Label equality: numerically when both parse as numbers (0.1 == '0.10'), else as text."""
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _ours(res: Results, run_id: str, cfg: dict, col: Column) -> tuple[float, float, float]:
    """(value, low, high): a config value (no interval), or a measured one as the mean over the run's seeds with
    the t interval across seeds, or with one seed the window-bootstrap interval `ci.<metric>` of its JSON."""
    if callable(col.ours):
        return col.ours(cfg), math.nan, math.nan
    source, metric = col.ours
    return seed_interval(res.seed_values(run_id, source, metric), res.value(run_id, source, f"ci.{metric}.low"),
                         res.value(run_id, source, f"ci.{metric}.high"))


def eval_columns(columns: tuple[Column, ...], res: Results, run_ids) -> tuple[Column, ...]:
    """`columns` plus one `<task>_<metric>` column per task evaluated on these runs that `columns` does not show
    (M12; e.g. the embedded pydoc_cont4 at small scale), named after the task and its headline metric."""
    shown = {c.ours[1] for c in columns if isinstance(c.ours, tuple) and c.ours[0] == "eval"}
    extra = [m for m in res.eval_metrics(run_ids) if m not in shown]
    return columns + tuple(Column(m.replace(".", "_"), ("eval", m), m.replace(".", "_"), ".2f") for m in extra)


def table_columns(name: str, res: Results) -> tuple[Column, ...]:
    """The columns of table `name` on these results: the paper's, then any further evaluated task's."""
    if name in CONFIG_TABLES:
        return CONFIG_COLUMNS
    spec = SCORE_TABLES[name]
    return eval_columns(spec.columns, res, res.runs(spec.group)["run_id"])


def score_table(name: str, res: Results, ref_dir: Path) -> pd.DataFrame:
    """Tables 1–5 (E1–E5) as a DataFrame: run_id, label, then `x`, `x_paper`, `x_diff` per column (the paper's
    columns, then one per further evaluated task, `table_columns`)."""
    spec = SCORE_TABLES[name]
    columns = table_columns(name, res)
    ref = load_reference(ref_dir, spec.ref)
    rows = []
    for run in res.runs(spec.group).to_dict("records"):
        key = run.get(spec.run_key)
        match = ref[[_same(key, k) for k in ref[spec.ref_key]]] if key is not None else ref.iloc[:0]
        paper = match.iloc[0] if len(match) else None
        row, cfg = {"run_id": run["run_id"], "label": run["label"]}, res.config(run["run_id"])
        for col in columns:
            ours, low, high = _ours(res, run["run_id"], cfg, col)
            theirs = parse_count(paper[col.ref]) if paper is not None and col.ref in paper else math.nan
            row |= {col.name: ours, f"{col.name}_paper": theirs, f"{col.name}_diff": ours - theirs,
                    f"{col.name}_low": low, f"{col.name}_high": high}
        if "note" in ref.columns:
            note = paper["note"] if paper is not None else None
            row["note"] = note if isinstance(note, str) else ""
        rows.append(row)
    names = ["run_id", "label", *[f"{c.name}{s}" for c in columns for s in ("", "_paper", "_diff")]]
    intervals = [f"{c.name}{s}" for c in columns for s in ("_low", "_high")]
    return pd.DataFrame(rows, columns=names + (["note"] if "note" in ref.columns else []) + intervals)


def config_table(name: str, res: Results, ref_dir: Path) -> pd.DataFrame:
    """Tables 6–8: each run's model configuration (`x`) beside the paper's row (`x_paper`), our parameter counts."""
    group, mapping = CONFIG_TABLES[name]
    ref = load_reference(ref_dir, "tables6-8_configs")
    ref = ref[ref["table"] == int(name[-1])].set_index("model")
    rows = []
    for run in res.runs(group).to_dict("records"):
        run_id = run["run_id"]
        model = mapping.get(run_id, "")
        paper = ref.loc[model] if model in ref.index else None
        row, cfg = {"run_id": run_id, "label": run["label"], "paper_model": model}, res.config(run_id)
        for col in CONFIG_COLUMNS:
            theirs = paper[col.ref] if paper is not None else math.nan
            row |= {col.name: col.ours(cfg), f"{col.name}_paper": parse_count(theirs)}
        model_cfg = cfg.get("model")
        params = ModelConfig.from_dict(model_cfg).param_counts() if model_cfg else {}
        row["params_non_embedding"] = float(params.get("non_embedding", math.nan))
        row["params_active"] = float(params.get("active", math.nan))
        note = paper["note"] if paper is not None else None
        row["note"] = note if isinstance(note, str) else ""
        rows.append(row)
    sizes = [f"{c.name}{s}" for c in CONFIG_COLUMNS for s in ("", "_paper")] + ["params_non_embedding", "params_active"]
    table = pd.DataFrame(rows, columns=["run_id", "label", "paper_model", *sizes, "note"])
    return table.astype({c: "Int64" for c in sizes})  # sizes are integers; missing ones stay empty


def build_table(name: str, res: Results, ref_dir: Path) -> pd.DataFrame:
    """Table `name` (table1..table8) as a DataFrame, the content of its CSV."""
    if name in SCORE_TABLES:
        return score_table(name, res, ref_dir)
    if name in CONFIG_TABLES:
        return config_table(name, res, ref_dir)
    raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")


# --- rendering -----------------------------------------------------------------------------------------------
def _formats(cols: tuple[Column, ...]) -> dict[str, str]:
    """Display format of every numeric output column (ours, _paper and _diff share their column's format)."""
    out = {f"{c.name}{s}": c.fmt for c in cols for s in ("", "_paper", "_diff")}
    return out | {"params_non_embedding": "count", "params_active": "count"}


def format_count(x: float) -> str:
    """1176764416 -> '1.177B', 3712576 -> '3.713M'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3f}{unit}"
    return f"{x:g}"


def format_cell(value, fmt: str | None) -> str:
    """A cell for .md/.tex: numbers in `fmt`, missing values as '–', text as is."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt is None or not isinstance(value, (int, float, np.number)):
        return str(value)
    return format_count(float(value)) if fmt == "count" else format(float(value), fmt)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "λ": r"$\lambda$", "ε": r"$\varepsilon$", "ρ": r"$\rho$", "−": r"$-$", "×": r"$\times$",
                  "≈": r"$\approx$", "≥": r"$\geq$", "≤": r"$\leq$", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def with_intervals(df: pd.DataFrame, formats: dict[str, str]) -> pd.DataFrame:
    """The display frame: each measured value `x` with an interval as the text 'x [low, high]' (95%: across seeds,
    or the window bootstrap of one seed), the `_low` / `_high` columns folded into it."""
    out = df.copy()
    for col in [c for c in df.columns if f"{c}_low" in df.columns]:
        fmt = formats.get(col)
        out[col] = [v if not (np.isfinite(lo) and np.isfinite(hi)) else
                    f"{format_cell(v, fmt)} [{format_cell(lo, fmt)}, {format_cell(hi, fmt)}]"
                    for v, lo, hi in zip(df[col], df[f"{col}_low"].astype(float), df[f"{col}_high"].astype(float))]
    return out.drop(columns=[c for c in df.columns if c.endswith(("_low", "_high"))])


def _shown(df: pd.DataFrame, formats: dict[str, str]) -> pd.DataFrame:
    """The cells as displayed (format_cell per column), all text; values with an interval as 'x [low, high]'."""
    df = with_intervals(df, formats)
    return pd.DataFrame({c: [format_cell(v, formats.get(c)) for v in df[c]] for c in df.columns}, columns=df.columns)


def to_markdown(df: pd.DataFrame, formats: dict[str, str], caption: str) -> str:
    """A pipe table through pandas/tabulate (numeric columns right-aligned) under a one-line caption."""
    shown = _shown(df, formats).apply(lambda col: col.str.replace("|", "\\|", regex=False))
    align = tuple("right" if c in formats else "left" for c in df.columns)
    table = shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True, colalign=align)
    return f"{caption}\n\n{table}\n"


def to_latex(df: pd.DataFrame, formats: dict[str, str], caption: str, label: str) -> str:
    """A booktabs table float (\\toprule/\\midrule/\\bottomrule) through pandas' Styler, text escaped by latex_escape."""
    styler = (_shown(df, formats).style.hide(axis="index").format(latex_escape).format_index(latex_escape, axis=1)
              .set_table_styles([{"selector": "small", "props": ":;"}]))
    return styler.to_latex(column_format="".join("r" if c in formats else "l" for c in df.columns), hrules=True,
                           caption=latex_escape(caption), label=f"tab:{label}", position="t",
                           position_float="centering", environment="table")


def render_table(name: str, res: Results, ref_dir: Path, out_dir: Path) -> list[Path]:
    """Write `<out_dir>/<stem>.csv`, `.md` and `.tex` of table `name` atomically; returns the three paths."""
    df = build_table(name, res, Path(ref_dir))
    item = TABLES[name]
    stem, formats = item.stems[0], _formats(table_columns(name, res))
    caption = f"Table {name.removeprefix('table')}. {item.caption}"
    out_dir = Path(out_dir)
    return [write_csv_atomic(out_dir / f"{stem}.csv", df),
            write_bytes_atomic(out_dir / f"{stem}.md", to_markdown(df, formats, caption).encode()),
            write_bytes_atomic(out_dir / f"{stem}.tex", to_latex(df, formats, caption, stem).encode())]


# --- beyond the paper (inventory.BEYOND) -------------------------------------------------------------------
def lns_table(res: Results) -> pd.DataFrame:
    """Table X1: Table 1's columns (ours only; the paper never trained LNS) for both arms, by depth then arm."""
    arms = depth_arms(res)
    columns = eval_columns(SCORE_TABLES["table1"].columns, res, arms["run_id"])
    rows = []
    for run in arms.to_dict("records"):
        cfg, row = res.config(run["run_id"]), dict(run)
        for col in columns:
            row[col.name], row[f"{col.name}_low"], row[f"{col.name}_high"] = _ours(res, run["run_id"], cfg, col)
        rows.append(row)
    intervals = [f"{c.name}{s}" for c in columns for s in ("_low", "_high")]
    return pd.DataFrame(rows, columns=["run_id", "label", "arm", "depth", *[c.name for c in columns], *intervals])


def render_lns_table(res: Results, out_dir: Path) -> list[Path]:
    """Write Table X1 as `<out_dir>/<stem>.{csv,md,tex}` atomically; returns the three paths."""
    df = lns_table(res)
    item = BEYOND["tableX1"]
    stem, caption = item.stems[0], f"Table X1. {item.caption}"
    columns = eval_columns(SCORE_TABLES["table1"].columns, res, depth_arms(res)["run_id"])
    formats = {"depth": ".0f", **{c.name: c.fmt for c in columns}}
    out_dir = Path(out_dir)
    return [write_csv_atomic(out_dir / f"{stem}.csv", df),
            write_bytes_atomic(out_dir / f"{stem}.md", to_markdown(df, formats, caption).encode()),
            write_bytes_atomic(out_dir / f"{stem}.tex", to_latex(df, formats, caption, stem).encode())]
