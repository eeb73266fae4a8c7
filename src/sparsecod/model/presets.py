"""Paper-scale model presets: every model of protocol §3 (E1-E7), sizes from protocol §1.2-§1.4 and Tables 6-8.

RMSNorm eps: 1e-6 for the d=2048 dense models, 1e-5 elsewhere (protocol §1.2 [CHOICE]).
MoE-7BA1B uses h_e=2048 as in Table 7 and the released config (protocol Q9); A8 uses G=2 (protocol Q8);
E7 uses f=2304 (protocol Q10).
"""

from __future__ import annotations

from .config import ModelConfig, MoEConfig


def _dense(L: int, d: int, f: int, H: int, H_kv: int) -> ModelConfig:
    return ModelConfig(n_layers=L, d_model=d, n_heads=H, n_kv_heads=H_kv, d_ff=f, norm_eps=1e-6 if d == 2048 else 1e-5)


def _moe(L: int, d: int, H: int, H_kv: int, E: int, k: int, h_e: int, h_s: int = 0) -> ModelConfig:
    moe = MoEConfig(n_experts=E, top_k=k, d_expert=h_e, d_shared=h_s)
    return ModelConfig(n_layers=L, d_model=d, n_heads=H, n_kv_heads=H_kv, d_ff=0, moe=moe, norm_eps=1e-5)


_L16 = _dense(16, 2048, 8192, 16, 16)
_ABL_L32 = _dense(32, 1536, 6144, 16, 16)

PAPER_MODELS: dict[str, ModelConfig] = {
    # E1 depth (Table 6)
    "depth-L12": _dense(12, 2048, 8192, 16, 16),
    "depth-L16": _L16,
    "depth-L24": _dense(24, 2048, 8192, 16, 16),
    "depth-L32": _dense(32, 2048, 8192, 16, 16),
    # E4 GQA (E2 weight decay and E3 sequence length train the L=16 model)
    "gqa-G1": _L16,
    "gqa-G4": _dense(16, 2048, 8192, 16, 4),
    "gqa-G16": _dense(16, 2048, 8192, 16, 1),
    # E5 MoE vs dense (Table 7)
    "dense-400M": _dense(16, 1536, 3072, 12, 12),
    "moe-2BA400M": _moe(16, 768, 12, 12, E=32, k=4, h_e=1536, h_s=1536),
    "dense-1B": _L16,
    "moe-7BA1B": _moe(16, 2048, 16, 16, E=64, k=8, h_e=2048),
    # E6 ablation stack (Table 8)
    "abl-A0": _L16,
    **{f"abl-A{i}": _ABL_L32 for i in range(1, 7)},
    "abl-A7": _dense(32, 1536, 6144, 16, 8),
    "abl-A8": _moe(32, 1120, 16, 8, E=64, k=8, h_e=1120),
    # E7 sub-layer variance and kurtosis
    "sub-L16": _dense(16, 1536, 2304, 12, 12),
    "sub-L32": _dense(32, 1536, 2304, 12, 12),
    # beyond the paper: E1's depth models with LayerNorm Scaling (group lns; same sizes as depth-L*)
    **{f"lns-L{L}": _dense(L, 2048, 8192, 16, 16).replace(norm_scaling="lns") for L in (12, 16, 24, 32)},
}

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


def get_preset(name: str) -> ModelConfig:
    try:
        return PAPER_MODELS[name].replace(name=name)
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(PAPER_MODELS)}") from None
