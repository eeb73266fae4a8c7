"""Every config key, defined once (type, default, bounds, description), and what is built from them.

errors     ConfigError: the one exception of bad configuration (a one-line message naming the key and the fix)
keys       the mechanism: `section` makes a frozen pydantic dataclass whose validation errors are ConfigErrors
train      TrainConfig (protocol §1.5), PRECISIONS
run        RunConfig: one training job (run.yaml)
analysis   AnalysisSettings: the `analysis:` section (protocol §1.6, M3-M11)
workflow   the other workflow sections (resources, evaluation, groups, sweeps, lr, run-only keys)
schema     workflow/schemas/config.schema.yaml generated from all of them (`sparsecod schema`)

The model shapes (sparsecod.model.config) and the data section (sparsecod.data.config) use the same mechanism.
Attributes are imported lazily: model.config imports errors and keys from here while run imports model.config.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ConfigError": "errors",
    "TrainConfig": "train", "PRECISIONS": "train", "LOGGERS": "train", "SHARDED_STRATEGY": "train",
    "RunConfig": "run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
