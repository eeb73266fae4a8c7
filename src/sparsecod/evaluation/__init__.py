"""Downstream evaluation (protocol M12) with the stock lm-eval harness, and export to stock transformers classes.

adapter.SparsecodLM    lm-eval model `sparsecod` (model_args checkpoint=<model dir>, ...)
downstream.evaluate_run  `sparsecod evaluate`: <run_dir>/eval/{lm_eval.json, downstream.csv, samples/}
tasks                  stock tasks on local data (offline group YAMLs) and the offline guard
embedded               `sparsecod eval-set`: the embedded task pydoc_cont4 from held-out builtin documents
export_hf.export_hf    `sparsecod export-hf`: dense -> LlamaForCausalLM, MoE -> Qwen2MoeForCausalLM directory
lm_eval_cli            `python -m sparsecod.evaluation.lm_eval_cli ...` = the stock `lm_eval` CLI with `sparsecod`

Attributes are imported lazily: importing lm_eval (and datasets) costs seconds and reads the HF offline
environment variables at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SparsecodLM": "adapter",
    "evaluate_run": "downstream", "headline_table": "downstream",
    "export_hf": "export_hf", "ExportError": "export_hf", "verify_export": "export_hf",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
