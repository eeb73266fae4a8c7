"""Parameter counts of a workflow config's models, measured on models built on the `meta` device (protocol §1.4)."""

from __future__ import annotations

import torch

from ..experiments import Registry, paper_registry
from .presets import get_preset
from .transformer import Transformer


def measured_counts(name: str, registry: Registry | None = None) -> dict[str, int]:
    """Build the model of run (or shape) `name` of `registry` (default: the paper config) without memory and
    count: total, non-embedding (all but wte), active."""
    cfg = get_preset(name, registry)
    with torch.device("meta"):
        model = Transformer(cfg)
    total = sum(p.numel() for p in model.parameters())
    non_emb = total - model.wte.weight.numel()
    inactive = 0
    if cfg.moe is not None:
        experts = model.blocks[0].ffn.experts
        per_expert = experts.gate[0].numel() + experts.up[0].numel() + experts.down[0].numel()
        inactive = cfg.n_layers * (cfg.moe.n_experts - cfg.moe.top_k) * per_expert
    return {"total": total, "non_embedding": non_emb, "active": non_emb - inactive}


def params_table(names: list[str] | None = None, fmt: str = "table", registry: Registry | None = None) -> str:
    """CSV (`run_id,total_params,non_embedding_params,active_params`) or an aligned table in billions; one row per
    name (default: every paper run id of `registry`)."""
    registry = registry or paper_registry()
    rows = [(n, measured_counts(n, registry)) for n in (names or registry.all_ids())]
    if fmt == "csv":
        lines = ["run_id,total_params,non_embedding_params,active_params"]
        lines += [f"{n},{c['total']},{c['non_embedding']},{c['active']}" for n, c in rows]
        return "\n".join(lines)
    lines = [f"{'run_id':<14}{'total':>10}{'non-emb':>10}{'active':>10}   (billions)"]
    lines += [f"{n:<14}{c['total'] / 1e9:>10.4f}{c['non_embedding'] / 1e9:>10.4f}{c['active'] / 1e9:>10.4f}" for n, c in rows]
    return "\n".join(lines)
