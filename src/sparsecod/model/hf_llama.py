"""Hugging Face `LlamaForCausalLM` <-> sparsecod's own model: the one weight-name mapping, and the import (issue 19).

Both are the same architecture (protocol §1.2): Pre-LN, RMSNorm with gain and no bias normalised in fp32, rotate-half
RoPE over the full head dim with base θ, GQA with query head h on KV head ⌊h/G⌋, SwiGLU, no biases. Our fused
QKV weight ((H + 2·H_kv)·d_h, d) is the row concatenation of q_proj, k_proj, v_proj. `to_llama` (used by
`sparsecod export-hf`) and `from_llama` (used by `import_llama`) are inverse up to LayerNorm Scaling, which the
export folds into the norm gains (s·g ⊙ x̂ = (s·g) ⊙ x̂, see transformer.norm_scale), so an LNS model exports as
a plain Llama.

`import_llama(src, out)` reads a checkpoint directory (config.json, model.safetensors or a sharded
model.safetensors.index.json, tokenizer.json) and writes a sparsecod model directory (model.io layout) whose
logits equal the checkpoint's in fp32. Tied embeddings are copied into our untied LM head (same function). The
vocabulary: `vocab_size` is the tokenizer's, padded (pad_vocab_to) up to the checkpoint's embedding rows.
Anything the model cannot reproduce exactly is refused with a one-line reason (`LlamaImportError`): another
architecture, a non-SiLU activation, attention or MLP biases, a rope_scaling type other than default, a head_dim
other than hidden_size / num_attention_heads, weights outside the Llama names, or pickled (.bin) weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .transformer import norm_scale

ROTARY_BUFFER = "rotary_emb.inv_freq"  # a non-weight buffer some older checkpoints saved; recomputed from θ


class LlamaImportError(ValueError):
    """The checkpoint cannot be reproduced exactly by sparsecod's model; the message says why."""


# --- the weight-name mapping (one place; export and import both use it) ------------------------------------
def _layer_names(i: int, ffn: bool = True) -> dict[str, str]:
    """Our name -> Llama name of block i's unfused weights (the fused qkv is handled by the callers); `ffn=False`
    leaves out the dense SwiGLU (an MoE block's FFN has its own names, evaluation/export_hf.py)."""
    src, dst = f"blocks.{i}.", f"model.layers.{i}."
    names = {src + "attn_norm.weight": dst + "input_layernorm.weight",
             src + "attn.out.weight": dst + "self_attn.o_proj.weight",
             src + "ffn_norm.weight": dst + "post_attention_layernorm.weight"}
    if ffn:
        names.update({src + "ffn.gate.weight": dst + "mlp.gate_proj.weight",
                      src + "ffn.up.weight": dst + "mlp.up_proj.weight",
                      src + "ffn.down.weight": dst + "mlp.down_proj.weight"})
    return names


GLOBAL_NAMES = {"wte.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight",
                "lm_head.weight": "lm_head.weight"}
QKV = ("q_proj", "k_proj", "v_proj")


def to_llama(state: dict[str, torch.Tensor], cfg: ModelConfig, ffn: bool = True) -> dict[str, torch.Tensor]:
    """Our state dict -> Llama parameter names (qkv split into q/k/v, LNS folded into the gains), fp32, contiguous.

    `ffn=False` maps everything but the FFN (the backbone Qwen2-MoE shares with Llama, used by the MoE export)."""
    if cfg.moe is not None and ffn:
        raise LlamaImportError("an MoE model has no LlamaForCausalLM equivalent (export-hf writes it as Qwen2-MoE)")
    rows = [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    out = {dst: state[src] for src, dst in GLOBAL_NAMES.items()}
    for i in range(cfg.n_layers):
        names = _layer_names(i, ffn)
        out.update({dst: state[src] for src, dst in names.items()})
        s = norm_scale(cfg, i)
        for norm in ("attn_norm", "ffn_norm"):
            key = names[f"blocks.{i}.{norm}.weight"]
            out[key] = out[key] * s if s != 1.0 else out[key]
        for name, w in zip(QKV, state[f"blocks.{i}.attn.qkv.weight"].split(rows, dim=0)):
            out[f"model.layers.{i}.self_attn.{name}.weight"] = w
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


def from_llama(state: dict[str, torch.Tensor], cfg: ModelConfig, tied: bool) -> dict[str, torch.Tensor]:
    """Llama parameter names -> our state dict (q/k/v fused, tied LM head copied from the embedding), fp32.

    Refuses keys outside the mapping (e.g. biases) and missing ones, naming the first few.
    """
    state = {k: v for k, v in state.items() if not k.endswith(ROTARY_BUFFER)}
    if tied:
        if "lm_head.weight" in state:
            raise LlamaImportError("tie_word_embeddings is true but the checkpoint also stores lm_head.weight")
        embed = state.get("model.embed_tokens.weight")
        state = {**state, "lm_head.weight": None if embed is None else embed.clone()}  # our head is untied
    names = dict(GLOBAL_NAMES)
    for i in range(cfg.n_layers):
        names.update(_layer_names(i))
    qkv = {f"model.layers.{i}.self_attn.{n}.weight" for i in range(cfg.n_layers) for n in QKV}
    expected = set(names.values()) | qkv
    extra, missing = sorted(set(state) - expected), sorted(k for k in expected if state.get(k) is None)
    if extra or missing:
        what = f"unexpected weights {extra[:3]}" if extra else f"missing weights {missing[:3]}"
        raise LlamaImportError(f"{what}{' …' if len(extra or missing) > 3 else ''}: not a plain bias-free Llama")
    out = {ours: state[theirs] for ours, theirs in names.items()}
    for i in range(cfg.n_layers):
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(
            [state[f"model.layers.{i}.self_attn.{n}.weight"] for n in QKV], dim=0)
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


# --- the config ----------------------------------------------------------------------------------------------
def _rope(hf: dict[str, Any]) -> tuple[float, str]:
    """(θ, rope type) from transformers ≥ 5 `rope_parameters` or the older `rope_theta` / `rope_scaling`."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    theta = params.get("rope_theta", hf.get("rope_theta", 10_000.0))
    return float(theta), str(kind)


def model_config(hf: dict[str, Any], tokenizer_vocab: int, name: str = "") -> ModelConfig:
    """The ModelConfig of a LlamaForCausalLM config.json; LlamaImportError naming the first unsupported setting."""
    archs = hf.get("architectures") or []
    if hf.get("model_type") != "llama" or (archs and "LlamaForCausalLM" not in archs):
        raise LlamaImportError(f"model_type={hf.get('model_type')!r}, architectures={archs}: only LlamaForCausalLM "
                               "checkpoints are supported")
    theta, rope_type = _rope(hf)
    d, H = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    refusals = [
        (hf.get("hidden_act", "silu") != "silu", f"hidden_act={hf.get('hidden_act')!r} (SwiGLU needs silu)"),
        (bool(hf.get("attention_bias")), "attention_bias=true (our attention has no biases)"),
        (bool(hf.get("mlp_bias")), "mlp_bias=true (our SwiGLU has no biases)"),
        (rope_type != "default", f"rope type {rope_type!r} (only the default, unscaled RoPE is reproduced)"),
        (hf.get("head_dim") not in (None, d // H) or d % H,
         f"head_dim={hf.get('head_dim')} with hidden_size={d}, num_attention_heads={H} (need head_dim = d / H)"),
    ]
    for bad, reason in refusals:
        if bad:
            raise LlamaImportError(f"unsupported Llama setting: {reason}")
    rows = int(hf["vocab_size"])
    if tokenizer_vocab > rows:
        raise LlamaImportError(f"tokenizer.json has {tokenizer_vocab} tokens but the embedding only {rows} rows")
    return ModelConfig(
        n_layers=int(hf["num_hidden_layers"]), d_model=d, n_heads=H,
        n_kv_heads=int(hf.get("num_key_value_heads") or H), d_ff=int(hf["intermediate_size"]),
        vocab_size=tokenizer_vocab, pad_vocab_to=rows,  # padded_vocab = rows for any tokenizer_vocab <= rows
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), rope_theta=theta,
        init_std=float(hf.get("initializer_range", 0.02)), name=name)


# --- the import ----------------------------------------------------------------------------------------------
def is_llama_dir(path: str | os.PathLike) -> bool:
    """A transformers checkpoint directory (config.json with a model_type, not a sparsecod model directory)."""
    path = Path(path) / "config.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text())
    return isinstance(meta, dict) and "model_type" in meta and meta.get("format") != "sparsecod-model"


def read_llama_weights(src: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or every shard named by model.safetensors.index.json (pickled .bin files are refused)."""
    from safetensors.torch import load_file

    index = src / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(src / shard)).items()}
    if (src / "model.safetensors").is_file():
        return load_file(str(src / "model.safetensors"))
    pickled = sorted(p.name for p in src.glob("*.bin"))
    raise LlamaImportError(f"{src} has no model.safetensors" + (f" (only pickled {pickled[0]}: re-save it with "
                           "save_pretrained(safe_serialization=True))" if pickled else ""))


def import_llama(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the checkpoint directory `src` as a sparsecod model directory `out_dir` (replaced atomically).

    config.json gains `imported_from` (src) and `max_position_embeddings` (the checkpoint's context length).
    """
    from tokenizers import Tokenizer

    from ..data.tokenizer import vocab_size
    from .io import save_model
    from .transformer import Transformer

    src = Path(src)
    if not is_llama_dir(src):
        raise LlamaImportError(f"{src} is not a transformers checkpoint directory (no config.json with model_type)")
    tok_file = src / "tokenizer.json"
    if not tok_file.is_file():
        raise FileNotFoundError(f"{tok_file} is missing: the held-out text is tokenized with the checkpoint's own "
                                "tokenizer.json (save it with tokenizer.save_pretrained)")
    hf = json.loads((src / "config.json").read_text())
    cfg = model_config(hf, vocab_size(Tokenizer.from_file(str(tok_file))), name=src.name)
    state = from_llama(read_llama_weights(src), cfg, tied=bool(hf.get("tie_word_embeddings", False)))
    with torch.device("meta"):
        model = Transformer(cfg)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:  # a shape mismatch between config.json and the weights
        raise LlamaImportError(f"weights do not match config.json: {str(err).splitlines()[-1].strip()}") from None
    extra = {"imported_from": str(src.resolve()), "max_position_embeddings": hf.get("max_position_embeddings")}
    return save_model(model, out_dir, extra=extra, tokenizer_file=tok_file)
