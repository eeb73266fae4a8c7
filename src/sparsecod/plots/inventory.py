"""What every figure and table of the paper and the claims verdict are made of (protocol §4, §5): output files and
the experiment groups each reads.

Imported by the Snakefile, so it imports nothing heavy. A figure `figN` is one Snakemake job writing all its
panels as `figures/<stem>.pdf` and `.png`; a table `tableN` writes `tables/<stem>.{csv,md,tex}`; `claims` writes
`claims.{md,csv}` (paths relative to the results directory).
Figures 20–25 (score visualizations of "three of the five λ / six T", protocol §4 [CHOICE]) are drawn for every run:
Fig 20 = λ 0 and 0.01, Fig 21 = λ 0.1, Fig 22 = λ 1.0 and 3.0, Fig 23 = T 256 and 512, Fig 24 = T 1024 and 2048,
Fig 25 = T 4096 and 8192 (panel letters a/b in that order).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..experiments import PAPER_GROUPS


@dataclass(frozen=True)
class Item:
    """One figure, table or the claims: target name, output stems (one per panel file), the groups whose runs it
    reads, its report caption, and where its files go: `<results>/<folder>/<stem>.<ext>` for every ext."""

    name: str
    stems: tuple[str, ...]
    groups: tuple[str, ...]
    caption: str
    folder: str = "figures"
    exts: tuple[str, ...] = ("pdf", "png")
    category: str = "Figures"  # of the HTML report

    def files(self, results: str) -> list[str]:
        base = f"{results}/{self.folder}/" if self.folder else f"{results}/"
        return [f"{base}{stem}.{ext}" for stem in self.stems for ext in self.exts]


def _fig(n: int, stems: str, groups: str, caption: str) -> Item:
    return Item(f"fig{n}", tuple(f"fig{n:02d}{s}" for s in stems.split()), tuple(groups.split()), caption)


SCORE_PANELS = {  # figure -> (group, runs): one score visualization (M4 heatmap, M5 heatmap, M6 bars) per run
    20: ("weight_decay", ("wd-0", "wd-0.01")),
    21: ("weight_decay", ("wd-0.1",)),
    22: ("weight_decay", ("wd-1.0", "wd-3.0")),
    23: ("seqlen", ("seq-256", "seq-512")),
    24: ("seqlen", ("seq-1024", "seq-2048")),
    25: ("seqlen", ("seq-4096", "seq-8192")),
    26: ("gqa", ("gqa-G4",)),
    27: ("gqa", ("gqa-G16",)),
    28: ("moe", ("dense-1B",)),
    29: ("moe", ("moe-7BA1B",)),
}
ATTENTION_DETAIL = {14: 0, 15: 1, 16: 2, 17: 3}  # figure -> index into analysis.attention_lengths (512..4096 at paper scale)


def _score_figure(n: int) -> Item:
    group, runs = SCORE_PANELS[n]
    letters = "ab" if len(runs) > 1 else ""
    stems = " ".join(f"{letters[i] if letters else ''}_scores_{run}" for i, run in enumerate(runs))
    return _fig(n, stems, group, f"Score visualization of {', '.join(runs)}: causal-effect heatmap C(s, l) (M4), "
                                 "permutation heatmap P(i, j) for i < j (M5) and per-layer loss ratio of the linear "
                                 "replacement with the 1.1 usefulness line (M6).")


FIGURES: dict[str, Item] = {item.name: item for item in [
    _fig(1, "_ablation_stack", "ablation",
         "Ablation stack A0–A8 (E6): bars = average acc_norm (M12) of ARC-Challenge and HellaSwag, or where they "
         "were not evaluated of the tasks that were (the embedded pydoc_cont4 at small scale; the axis names them), "
         "stars = usefulness U (M6, top axis); bold = kept ingredients, faded = side branches; hollow markers = "
         "paper (its accuracy only beside ARC-C/HellaSwag averages)."),
    _fig(2, "a_depth_variance b_depth_jacobian c_depth_scores", "depth",
         "Depth scaling (E1): (a) last-layer variance Var(x_L) vs training step (M1, log axis), (b) Jacobian "
         "deviation ‖J̄−I‖_F/d per layer (M3), (c) causal, permutation and usefulness scores (M4–M6), plus "
         "usefulness under the released code's map x Wᵀ + b (D1), with the paper's bar values as hollow markers."),
    _fig(3, "_depth_jacobian_heatmaps", "depth",
         "Averaged block Jacobians J̄ (M3b) at layer L−2 of each depth model, top-left 64×64 block, shared colour scale."),
    _fig(4, "a_wd_variance b_wd_weight_sparsity c_wd_weight_sparsity d_wd_weight_sparsity", "weight_decay",
         "Weight decay (E2): (a) last-layer variance vs step (M1); (b–d) weight sparsity S_ε of all parameters "
         "(M7) vs λ at ε = 1e-2, 1e-3, 1e-4."),
    _fig(5, "a_seq_variance b_seq_attention_sparsity c_seq_attention_sparsity d_seq_attention_sparsity", "seqlen",
         "Training sequence length (E3): (a) last-layer variance vs step aligned to the shortest run (M1, log "
         "axis); (b–d) attention sparsity S_ε (M8) at the longest evaluation length vs training T, ε = 1e-2, 1e-3, 1e-4."),
    _fig(6, "_seq_attention_sparsity_layers", "seqlen",
         "Attention sparsity per layer (M8, mean over heads) at the longest evaluation length, one line per training T."),
    _fig(7, "_gqa_variance", "gqa",
         "GQA group size (E4): last-layer variance vs step for G = 1, 4, 16, aligned to the G = 1 run (M1)."),
    _fig(8, "a_moe_variance_400M b_moe_variance_1B", "moe",
         "MoE vs dense (E5): last-layer variance vs step, (a) Dense-400M vs MoE-2BA400M, (b) Dense-1B vs MoE-7BA1B (M1)."),
    _fig(9, "_depth_variance_layers", "depth",
         "Variance of every block output during training (M1), one panel per depth model (E1), log axis."),
    _fig(10, "_sublayer_attention_variance", "sublayer",
         "Attention-output variance Var(a_l) of every layer during training (M2), L = 16 and L = 32 (E7)."),
    _fig(11, "_sublayer_mlp_variance", "sublayer",
         "MLP-output variance Var(m_l) of every layer during training (M2), L = 16 and L = 32 (E7)."),
    _fig(12, "_depth_jacobian_layers", "depth",
         "Averaged block Jacobians J̄ (M3b) of the deepest depth model at several layers, shared colour scale."),
    _fig(13, "_sublayer_kurtosis", "sublayer",
         "Kurtosis of block outputs during training (M10): layer-level K^(l) (top) and the 99th percentile of the "
         "per-dimension kurtosis (bottom), L = 16 and L = 32 (E7)."),
    *[_fig(n, f"_seq_attention_sparsity_Te{512 << i}", "seqlen",
           f"Attention sparsity (M8) at the {i + 1}. evaluation length (paper T_e = {512 << i}): global S_ε vs "
           "training T (left) and per layer at ε = 1e-3 (right).")
      for n, i in ATTENTION_DETAIL.items()],
    _fig(18, "_seq_attention_entropy", "seqlen",
         "Attention entropy (M9, mean over layers and heads) vs training T, one line per evaluation length."),
    _fig(19, "a_seq_variance_full b_gqa_variance_full", "seqlen gqa",
         "Unaligned (full-length) last-layer variance trajectories (M1) of (a) the sequence-length and (b) the GQA runs."),
    *[_score_figure(n) for n in SCORE_PANELS],
]}

def _table(n: int, slug: str, group: str, caption: str) -> Item:
    return Item(f"table{n}", (f"table{n}_{slug}",), (group,), caption, "tables", ("csv", "md", "tex"), "Tables")


TABLES: dict[str, Item] = {item.name: item for item in [
    _table(1, "depth", "depth",
           "Depth (E1): parameters, effective/wasted layers (M6; also effective layers under the released "
           "code's map x Wᵀ + b, D1), PPL (M11), MMLU acc, ARC-C, ARC-E, HellaSwag acc_norm (M12), and a "
           "`<task>_<metric>` column per further evaluated task (the embedded pydoc_cont4 at small scale)."),
    _table(2, "weight_decay", "weight_decay", "Weight decay (E2): PPL (M11), causal, permutation, usefulness (M4–M6)."),
    _table(3, "seqlen", "seqlen", "Sequence length (E3): PPL (M11), causal, permutation, usefulness (M4–M6)."),
    _table(4, "gqa", "gqa", "GQA group size (E4): PPL (M11), causal, permutation, usefulness (M4–M6)."),
    _table(5, "moe", "moe", "MoE vs dense (E5): PPL (M11), causal, permutation, usefulness (M4–M6)."),
    _table(6, "depth_configs", "depth", "Depth model configurations (E1) as run, next to the paper's."),
    _table(7, "moe_configs", "moe", "MoE and dense model configurations (E5) as run, next to the paper's."),
    _table(8, "ablation_configs", "ablation", "Ablation model configurations (E6) as run, next to the paper's."),
]}

CLAIMS = Item("claims", ("claims",), PAPER_GROUPS,
              "Each claim of the paper evaluated on this workflow's runs: the statistic (Spearman ρ over a sweep, "
              "a ratio or a difference) with its 95% interval and one-sided p-value, the same statistic on the "
              "untrained (step-0) controls, the paper's value computed the same way from config/reference (protocol §5), "
              "and a verdict (reproduced / contradicted / inconclusive) with its reason. At small scales many "
              "verdicts are \"inconclusive\": that is a result, not an error.",
              "", ("md", "csv"), "Claims")
# Beyond the paper (issue 19): the LayerNorm Scaling arm (group lns) against E1's Pre-LN runs. Ids carry an X so
# they are never mistaken for the paper's figures, tables or claims.
BEYOND: dict[str, Item] = {item.name: item for item in [
    Item("figX1", ("figX1_lns_variance",), ("depth", "lns"),
         "Beyond the paper — LayerNorm Scaling vs Pre-LN (group lns vs E1): (left) last-layer variance Var(x_L) vs "
         "training step (M1, log axis), solid Pre-LN, dashed LNS; (right) its final value (mean of the last 10% of "
         "the log) by depth for both arms.", category="Beyond the paper"),
    Item("tableX1", ("tableX1_lns_depth",), ("depth", "lns"),
         "Beyond the paper — Table 1's columns for both arms of the depth sweep, Pre-LN (E1) and LayerNorm Scaling "
         "(group lns): parameters, effective/wasted layers (M6), PPL (M11), MMLU, ARC-C, ARC-E, HellaSwag and "
         "any further evaluated task (M12).",
         "tables", ("csv", "md", "tex"), "Beyond the paper"),
    Item("claimsX", ("claims_beyond_paper",), ("depth", "lns"),
         "Beyond the paper — claims about LayerNorm Scaling (not the paper's), checked with the paper claims' "
         "verdict rule: X1 = LNS lowers last-layer variance vs Pre-LN at equal depth, X2 = LNS raises the causal, "
         "permutation and usefulness scores at L=32.", "", ("md", "csv"), "Beyond the paper"),
]}
ITEMS: dict[str, Item] = {**FIGURES, **TABLES, CLAIMS.name: CLAIMS, **BEYOND}
