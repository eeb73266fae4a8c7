"""The paper's model of every run (protocol §3 E1-E7; sizes protocol §1.2-§1.4, Tables 6-8).

The shapes are defined once, in config/config.yaml (`models:`, and each run's `model:`); a preset is the model of a
paper run id (`depth-L16`, `abl-A8`, ...) or a shape name under `models:` (`dense-L16`), read through the same
registry the workflow builds (sparsecod.experiments.paper_registry). PAPER_SIZES are the paper's reported sizes.
"""

from __future__ import annotations

from typing import Any

from ..experiments import Registry, paper_registry
from .config import ModelConfig

# Paper's reported sizes (protocol §1.4), in parameters: (non-embedding, active) ; None = not reported.
PAPER_SIZES: dict[str, tuple[float, float | None]] = {
    "depth-L12": (0.908e9, None),
    "depth-L16": (1.1768e9, None),
    "depth-L24": (1.714e9, None),
    "depth-L32": (2.251e9, None),
    "gqa-G4": (1.0761e9, None),
    "gqa-G16": (1.0509e9, None),
    "dense-400M": (0.455e9, None),
    "moe-2BA400M": (1.945e9, 0.360e9),
}


def paper_models(registry: Registry | None = None) -> dict[str, ModelConfig]:
    """Run id -> its model, for every paper run of `registry` (default: the paper config), aliases included."""
    reg = registry or paper_registry()
    return {run_id: get_preset(run_id, reg) for run_id in reg.all_ids()}


def get_preset(name: str, registry: Registry | None = None) -> ModelConfig:
    """The model of run `name`, or the shape `name` under `models:`, named `name`."""
    reg = registry or paper_registry()
    if name in reg.runs or name in reg.aliases:
        return reg.spec(name).model.replace(name=name)
    if name in reg.models:
        return reg.models[name].replace(name=name)
    raise KeyError(f"unknown model preset {name!r}: give a run id ({', '.join(reg.all_ids())}) "
                   f"or a name under models: ({', '.join(reg.models)})")


def __getattr__(name: str) -> Any:
    if name == "PAPER_MODELS":  # read on first use: parsing the config is not free
        return paper_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
