"""Layer-effectiveness and sparsity metrics of the paper, one module per family (spec §2, M1-M11).

moments (M1/M2 variance, M10 kurtosis; shared with training), jacobian (M3/M3b), causal (M4), permutation (M5),
usefulness (M6), weight_sparsity (M7), attention (M8/M9), kurtosis (M10 on held-out data), perplexity (M11).
samples (ANALYSIS_SET, ATTN_SET, PPL_SET, spec §1.6), settings (the `analysis:` config section), states
(forwards through the model's intervention mechanism), results (atomic JSON/parquet/npy outputs) and
runner (`sparsecod analyze`). Modules import torch; import them directly, e.g. `sparsecod.metrics.causal`.
"""
