"""Typed model configuration (protocol §1.2 dense, §1.3 MoE, §1.4 parameter counts).

One dataclass describes every model of the paper: dense or MoE, MHA, GQA or MQA. Sizes are
validated on construction so a bad config fails before any job starts, naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CE_CHUNK_TOKENS = 4096  # tokens per chunk of the training loss: 4096 x V=50304 fp32 logits = 0.8 GB at a time


NORM_SCALINGS = ("none", "lns")  # model.norm_scaling: Pre-LN as in the paper, or LayerNorm Scaling


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and how to fix it."""


@dataclass(frozen=True)
class MoEConfig:
    """OLMoE-style dropless MoE FFN (protocol §1.3).

    n_experts: E routed experts; top_k: k experts per token; d_expert: SwiGLU inner width h_e of one
    expert; d_shared: inner width h_s of the optional shared expert (0 = none); lb_weight / z_weight:
    load-balancing and router z-loss weights, each divided by the number of layers (protocol §1.3).
    """

    n_experts: int
    top_k: int
    d_expert: int
    d_shared: int = 0
    lb_weight: float = 0.01
    z_weight: float = 0.001

    def __post_init__(self) -> None:
        if self.n_experts < 1:
            raise ConfigError(f"moe.n_experts must be >= 1, got {self.n_experts}")
        if not 1 <= self.top_k <= self.n_experts:
            raise ConfigError(
                f"moe.top_k={self.top_k} must be between 1 and moe.n_experts={self.n_experts}"
            )
        if self.d_expert < 1 or self.d_shared < 0:
            raise ConfigError("moe.d_expert must be >= 1 and moe.d_shared >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """A Pre-LN Llama-style decoder (protocol §1.2) with an optional MoE FFN (protocol §1.3).

    vocab_size is the tokenizer's vocabulary; embedding and LM-head rows are padded up to a
    multiple of `pad_vocab_to` (50280 -> 50304 at paper scale). d_ff is the SwiGLU inner width f
    (ignored when `moe` is set). norm_scaling: "none" (the paper's Pre-LN) or "lns" (LayerNorm Scaling,
    Sun et al. 2025: block ℓ's pre-norm outputs scaled by 1/√ℓ, see `transformer.norm_scale`); no parameters.
    """

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int = 50280
    pad_vocab_to: int = 128
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    init_std: float = 0.02
    moe: MoEConfig | None = None
    norm_scaling: str = "none"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "vocab_size", "pad_vocab_to"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model.d_model={self.d_model} must be divisible by model.n_heads={self.n_heads}"
            )
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} must be divisible by model.n_kv_heads={self.n_kv_heads}"
                " (GQA group size G = n_heads / n_kv_heads)"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"head dim d_model/n_heads={self.d_model // self.n_heads} must be even (RoPE)")
        if self.norm_scaling not in NORM_SCALINGS:
            raise ConfigError(f"model.norm_scaling={self.norm_scaling!r}: use one of {', '.join(NORM_SCALINGS)}")
        if self.moe is None and self.d_ff < 1:
            raise ConfigError(f"model.d_ff must be >= 1 for a dense model, got {self.d_ff}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def group_size(self) -> int:
        """G = H / H_kv query heads per KV head."""
        return self.n_heads // self.n_kv_heads

    @property
    def padded_vocab(self) -> int:
        m = self.pad_vocab_to
        return (self.vocab_size + m - 1) // m * m

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        """The dataclass repr, leaving out norm_scaling when it is "none": the workflow keys training on this repr
        (run_config params), so runs planned before the option existed keep their key and never retrain."""
        shown = [f for f in dataclasses.fields(self)
                 if f.repr and not (f.name == "norm_scaling" and self.norm_scaling == "none")]
        return f"{type(self).__qualname__}(" + ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in shown) + ")"

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model config key(s): {sorted(unknown)}; known: {sorted(known)}")
        data = dict(data)
        if data.get("moe") is not None:
            moe_known = {f.name for f in dataclasses.fields(MoEConfig)}
            bad = set(data["moe"]) - moe_known
            if bad:
                raise ConfigError(f"unknown model.moe key(s): {sorted(bad)}; known: {sorted(moe_known)}")
            data["moe"] = MoEConfig(**data["moe"])
        return cls(**data)

    # --- parameter counts (protocol §1.4) -----------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        """Exact parameter counts without building the model.

        total: every parameter; non_embedding: all but the input embedding `wte` (the paper's
        convention, protocol §1.4); active: non_embedding minus the routed experts a token does not use.
        """
        d, L, hd = self.d_model, self.n_layers, self.head_dim
        attn = d * (self.n_heads + 2 * self.n_kv_heads) * hd + d * d
        if self.moe is None:
            ffn = ffn_active = 3 * d * self.d_ff
        else:
            m = self.moe
            expert = 3 * d * m.d_expert
            shared = 3 * d * m.d_shared
            ffn = d * m.n_experts + m.n_experts * expert + shared
            ffn_active = d * m.n_experts + m.top_k * expert + shared
        norms = 2 * d
        V = self.padded_vocab
        embedding = V * d
        head = V * d + d  # LM head + final norm gain
        non_emb = L * (attn + ffn + norms) + head
        active = L * (attn + ffn_active + norms) + head
        return {"total": non_emb + embedding, "non_embedding": non_emb, "active": active}
