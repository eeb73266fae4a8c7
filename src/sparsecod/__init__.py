"""sparsecod: re-run "When Does Sparsity Mitigate the Curse of Depth in LLMs" (2026) end to end.

`sparsecod.load_model(path)` loads a trained `model/` directory. Heavy modules load lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in {"ModelConfig", "MoEConfig", "Transformer", "load_model", "save_model"}:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
