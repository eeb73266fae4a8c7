"""Layer-effectiveness and sparsity metrics of the paper, one module per family (spec §2, M1-M11)."""
