"""Typed model configuration (protocol §1.2 dense, §1.3 MoE, §1.4 parameter counts).

One dataclass describes every model of the paper: dense or MoE, MHA, GQA or MQA. Its fields are the keys of a
workflow config's `models.<name>` (sparsecod.config.keys: type, default, bounds, description); sizes are validated
on construction so a bad config fails before any job starts, naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Literal, get_args

from pydantic.json_schema import SkipJsonSchema

from ..config.errors import ConfigError
from ..config.keys import Int, Real, from_mapping, key, section

NormScaling = Literal["none", "lns"]  # model.norm_scaling: Pre-LN as in the paper, or LayerNorm Scaling
NORM_SCALINGS = get_args(NormScaling)

__all__ = ["ConfigError", "ModelConfig", "MoEConfig", "NORM_SCALINGS"]

CE_CHUNK_TOKENS = 4096  # tokens per chunk of the training loss: 4096 x V=50304 fp32 logits = 0.8 GB at a time


@section("moe")
class MoEConfig:
    """OLMoE-style dropless MoE FFN (protocol §1.3).

    n_experts: E routed experts; top_k: k experts per token; d_expert: SwiGLU inner width h_e of one
    expert; d_shared: inner width h_s of the optional shared expert (0 = none); lb_weight / z_weight:
    load-balancing and router z-loss weights, each divided by the number of layers (protocol §1.3).
    """

    n_experts: Int = key(doc="E: routed experts per layer", ge=1)
    top_k: Int = key(doc="k: experts per token (<= n_experts)", ge=1)
    d_expert: Int = key(doc="h_e: SwiGLU inner width of one expert", ge=1)
    d_shared: Int = key(0, "h_s: inner width of the shared expert (0 = none)", ge=0)
    lb_weight: Real = key(0.01, "load-balancing loss weight (divided by the number of layers)", ge=0)
    z_weight: Real = key(0.001, "router z-loss weight (divided by the number of layers)", ge=0)

    def __post_init__(self) -> None:
        if self.top_k > self.n_experts:
            raise ConfigError(
                f"moe.top_k={self.top_k} must be between 1 and moe.n_experts={self.n_experts}"
            )


@section("model")
class ModelConfig:
    """A Pre-LN Llama-style decoder (protocol §1.2) with an optional MoE FFN (protocol §1.3).

    vocab_size is the tokenizer's vocabulary; embedding and LM-head rows are padded up to a
    multiple of `pad_vocab_to` (50280 -> 50304 at paper scale). d_ff is the SwiGLU inner width f
    (ignored when `moe` is set). norm_scaling: "none" (the paper's Pre-LN) or "lns" (LayerNorm Scaling,
    Sun et al. 2025: block ℓ's pre-norm outputs scaled by 1/√ℓ, see `transformer.norm_scale`); no parameters.
    """

    n_layers: Int = key(doc="L: transformer blocks", ge=1)
    d_model: Int = key(doc="d: residual stream width (d_model / n_heads must be even, RoPE)", ge=2)
    n_heads: Int = key(doc="H: query heads (divides d_model)", ge=1)
    n_kv_heads: Int = key(doc="H_kv: key/value heads (divides n_heads; G = H / H_kv)", ge=1)
    d_ff: Int = key(doc="f: SwiGLU inner width (0 with moe)", ge=0)
    vocab_size: Int = key(50280, "tokenizer vocabulary (run configs take it from the token shards)", ge=1)
    pad_vocab_to: Int = key(128, "embedding and LM-head rows are padded to a multiple of this", ge=1)
    norm_eps: Real = key(1e-5, "RMSNorm ε", gt=0)
    rope_theta: Real = key(10_000.0, "RoPE base θ", gt=0)
    init_std: Real = key(0.02, "standard deviation of the normal initialisation", gt=0)
    moe: MoEConfig | None = key(None, "OLMoE-style dropless MoE FFN instead of the dense one (protocol §1.3)")
    norm_scaling: NormScaling = key("none", "none = Pre-LN (the paper), lns = LayerNorm Scaling (1/sqrt(l) on "
                                            "block l's norm outputs)")
    name: SkipJsonSchema[str] = field(default="", compare=False)  # the model's name under models: (set by the registry)

    def __post_init__(self) -> None:
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
        """From a mapping (a `models.<name>` entry, a saved config.json); a `moe` mapping becomes a MoEConfig."""
        return from_mapping(cls, data)

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
