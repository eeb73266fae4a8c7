"""Layer-effectiveness and sparsity metrics of the paper, one module per family (protocol §2, M1-M11).

jacobian (M3/M3b), causal (M4), permutation (M5), usefulness (M6), weight_sparsity (M7), attention (M8/M9),
kurtosis (M10 on held-out data), perplexity (M11), variance_curve (M1 curves of a run's variance log; pandas only).
samples (ANALYSIS_SET, ATTN_SET, PPL_SET, protocol §1.6), settings (the `analysis:` config section), states
(forwards through the model's intervention mechanism), results (atomic JSON/parquet/npy outputs) and
runner (`sparsecod analyze`). The activation moments shared with training live in sparsecod.model.moments.
Modules import torch (variance_curve excepted); import them directly, e.g. `sparsecod.metrics.causal`.
"""
