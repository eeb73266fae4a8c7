"""The paper's model: Pre-LN Llama-style decoder, dense or MoE, MHA/GQA/MQA (protocol §1.2-§1.4).

Attributes are imported lazily so that config-only users (the Snakemake registry) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ConfigError, ModelConfig, MoEConfig

_LAZY = {
    "load_model": "io", "read_model_config": "io", "save_model": "io",
    "PAPER_MODELS": "presets", "get_preset": "presets",
    "AffineBlock": "transformer", "Block": "transformer", "BlockTrace": "transformer",
    "ForwardContext": "transformer", "ModelOutput": "transformer", "Transformer": "transformer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConfigError", "ModelConfig", "MoEConfig", *_LAZY]
