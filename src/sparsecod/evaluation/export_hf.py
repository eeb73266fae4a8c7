"""`sparsecod export-hf`: a sparsecod model as a stock Hugging Face transformers directory (no remote code).

Dense models become `LlamaForCausalLM`; the architectures match exactly (protocol §1.2): Pre-LN, RMSNorm with gain and
no bias (fp32 normalisation), rotate-half RoPE over the full head dim with base θ, GQA where query head h uses KV head
⌊h/G⌋, SwiGLU, untied LM head, no biases. Our fused QKV weight ((H + 2·H_kv)·d_h, d) is split into q/k/v rows; no
RoPE permutation is needed because both use the rotate-half layout. The vocabulary is the padded one (embedding
rows), so logits agree position for position. The weight mapping lives in model/hf_llama.py (also used to import
Llama checkpoints); LayerNorm Scaling is folded into the norm gains.

MoE models (protocol §1.3) become `Qwen2MoeForCausalLM`, which shares every non-FFN name and operation with Llama and
routes as we do: a softmax over all E experts, top-k by probability, weights not renormalised (`norm_topk_prob:
false`), no QK-norm. Its q/k/v projections have biases (`qkv_bias: true`, the only layout older transformers
versions and other Qwen2-MoE readers know): they are written as zeros. Our mix shared/(k+1) + k/(k+1)·Σ p_e·expert_e is
folded into the weights: every routed expert's down projection is scaled by k/(k+1) and the shared expert's by
2/(k+1), with a zero shared-expert gate (sigmoid(0) = 1/2). Without a shared expert the routed sum is unscaled and
the (mandatory) Qwen2-MoE shared expert is one zero unit, contributing exactly 0. `verify_export` measures the logit
difference with transformers itself (`export-hf --verify`).

Output directory (written atomically, without importing transformers):
    config.json              LlamaConfig / Qwen2MoeConfig fields (rope_parameters, rms_norm_eps, num_key_value_heads,
                             head_dim, vocab_size = padded vocab, tie_word_embeddings false, no biases)
    generation_config.json   eos/pad ids
    model.safetensors        fp32 weights under the Llama / Qwen2-MoE hub names (one tensor per expert)
    tokenizer.json           the model's tokenizer, unchanged
    tokenizer_config.json    PreTrainedTokenizerFast with eos <|endoftext|> (and pad <|padding|> if present)
    special_tokens_map.json
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from ..fileio import replace_dir_atomic
from ..model.config import ModelConfig
from ..model.hf_llama import to_llama
from ..model.io import read_model_config
from .checkpoint import resolve_model_dir, training_seq_len

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
DEFAULT_MAX_POSITIONS = 2048
PARITY_ATOL = 1e-4  # max |logit difference| (fp32) an export must meet (`verify_export`)

class ExportError(ValueError):
    """The model cannot be exported exactly (or an export does not reproduce our logits)."""


def _fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.float32).contiguous() for k, v in state.items()}


def _common_config(cfg: ModelConfig, eos_id: int, pad_id: int | None, max_positions: int) -> dict:
    """config.json fields Llama and Qwen2-MoE share (backbone, RoPE, norms, tokens)."""
    return {
        "vocab_size": cfg.padded_vocab,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": max_positions,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def llama_config(cfg: ModelConfig, eos_id: int, pad_id: int | None, max_positions: int) -> dict:
    """The config.json of the equivalent LlamaForCausalLM (dense models)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **_common_config(cfg, eos_id, pad_id, max_positions),
        "intermediate_size": cfg.d_ff,
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
    }


# Our dense state dict -> Llama names: the one mapping (model/hf_llama.py), shared with `sparsecod analyze`'s import.
llama_state_dict = to_llama


def qwen2_moe_config(cfg: ModelConfig, eos_id: int, pad_id: int | None, max_positions: int) -> dict:
    """The config.json of the equivalent Qwen2MoeForCausalLM (MoE models; every layer sparse)."""
    m = cfg.moe
    assert m is not None
    return {
        "architectures": ["Qwen2MoeForCausalLM"],
        "model_type": "qwen2_moe",
        **_common_config(cfg, eos_id, pad_id, max_positions),
        "intermediate_size": m.d_expert,  # the dense-MLP width; unused (no mlp_only_layers)
        "moe_intermediate_size": m.d_expert,
        "shared_expert_intermediate_size": m.d_shared or 1,  # 1 = the zero stand-in when we have no shared expert
        "num_experts": m.n_experts,
        "num_experts_per_tok": m.top_k,
        "norm_topk_prob": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "qkv_bias": True,  # written as zeros (qwen2_moe_state_dict)
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": cfg.n_layers,
        "output_router_logits": False,
        "router_aux_loss_coef": m.lb_weight,
    }


def qwen2_moe_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our MoE state dict -> Qwen2-MoE hub names (one gate/up/down_proj per expert), mixing factors folded in, fp32.

    Ours: experts.gate/up (E, d, h_e), experts.down (E, h_e, d) used as x @ W; router.weight (E, d); shared.*
    nn.Linear weights. Theirs: nn.Linear layout (out, in). Routed down × k/(k+1) and shared down × 2/(k+1) with a
    zero shared_expert_gate (sigmoid 0.5); without a shared expert: routed unscaled, a zero 1-unit shared expert.
    Zero q/k/v biases.
    """
    m = cfg.moe
    assert m is not None
    k, d = m.top_k, cfg.d_model
    state = {key: v.to(torch.float32) for key, v in state.items()}
    out = to_llama(state, cfg, ffn=False)  # the backbone Qwen2-MoE shares with Llama (LNS folded in)
    routed_scale = k / (k + 1) if m.d_shared else 1.0
    q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    for i in range(cfg.n_layers):
        for proj, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            out[f"model.layers.{i}.self_attn.{proj}_proj.bias"] = torch.zeros(rows)
        src, dst = f"blocks.{i}.ffn.", f"model.layers.{i}.mlp."
        out[dst + "gate.weight"] = state[src + "router.weight"]
        gate, up, down = (state[src + "experts." + p] for p in ("gate", "up", "down"))
        for e in range(m.n_experts):
            out[dst + f"experts.{e}.gate_proj.weight"] = gate[e].T
            out[dst + f"experts.{e}.up_proj.weight"] = up[e].T
            out[dst + f"experts.{e}.down_proj.weight"] = down[e].T * routed_scale
        if m.d_shared:
            out[dst + "shared_expert.gate_proj.weight"] = state[src + "shared.gate.weight"]
            out[dst + "shared_expert.up_proj.weight"] = state[src + "shared.up.weight"]
            out[dst + "shared_expert.down_proj.weight"] = state[src + "shared.down.weight"] * (2 / (k + 1))
        else:
            out[dst + "shared_expert.gate_proj.weight"] = torch.zeros(1, d)
            out[dst + "shared_expert.up_proj.weight"] = torch.zeros(1, d)
            out[dst + "shared_expert.down_proj.weight"] = torch.zeros(d, 1)
        out[dst + "shared_expert_gate.weight"] = torch.zeros(1, d)
    return _fp32(out)


def hf_config(cfg: ModelConfig, eos_id: int, pad_id: int | None, max_positions: int) -> dict:
    """config.json of the transformers class our model maps to: Llama (dense) or Qwen2-MoE (MoE)."""
    build = llama_config if cfg.moe is None else qwen2_moe_config
    return build(cfg, eos_id, pad_id, max_positions)


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict under the names (and folded factors) of `hf_config`'s class."""
    return llama_state_dict(state, cfg) if cfg.moe is None else qwen2_moe_state_dict(state, cfg)


def tokenizer_files(tokenizer_file: Path, max_positions: int) -> tuple[dict, dict, int, int | None]:
    """(tokenizer_config.json, special_tokens_map.json, eos id, pad id or None) for PreTrainedTokenizerFast."""
    tok = Tokenizer.from_file(str(tokenizer_file))
    eos_id = tok.token_to_id(EOS_TOKEN)
    if eos_id is None:
        raise ExportError(f"{tokenizer_file} has no {EOS_TOKEN!r} token")
    pad_id = tok.token_to_id(PAD_TOKEN)
    special = {"eos_token": EOS_TOKEN, **({"pad_token": PAD_TOKEN} if pad_id is not None else {})}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_positions,
        "bos_token": None,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    return config, special, int(eos_id), pad_id


def export_hf(source: str | os.PathLike, out_dir: str | os.PathLike, max_positions: int | None = None) -> Path:
    """Write `source` (a run directory or model directory) as a transformers directory `out_dir` (replaced).

    Dense -> LlamaForCausalLM, MoE -> Qwen2MoeForCausalLM. max_positions (max_position_embeddings,
    model_max_length) defaults to the run's training T, else 2048.
    """
    model_dir = resolve_model_dir(source)
    cfg = read_model_config(model_dir)
    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise FileNotFoundError(f"{tok_file} is missing: the model directory must hold its tokenizer")
    max_positions = max_positions or training_seq_len(model_dir) or DEFAULT_MAX_POSITIONS
    tok_config, special, eos_id, pad_id = tokenizer_files(tok_file, max_positions)

    state = hf_state_dict(load_file(str(model_dir / "model.safetensors")), cfg)
    out = Path(out_dir)
    with replace_dir_atomic(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        texts = {
            "config.json": hf_config(cfg, eos_id, pad_id, max_positions),
            "generation_config.json": {"eos_token_id": eos_id, "pad_token_id": pad_id, "bos_token_id": None},
            "tokenizer_config.json": tok_config,
            "special_tokens_map.json": special,
        }
        for name, obj in texts.items():
            (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
        shutil.copyfile(tok_file, tmp / "tokenizer.json")
    return out


def verify_export(source: str | os.PathLike, hf_dir: str | os.PathLike, seq_len: int = 64, seed: int = 0) -> float:
    """Max |logit difference| (fp32, 2 random sequences) between our model and `AutoModelForCausalLM` on `hf_dir`.

    ExportError quoting the measured difference when it exceeds PARITY_ATOL (the variant is not expressed exactly).
    Imports transformers (the test extra).
    """
    try:
        import transformers
    except ImportError:
        raise ExportError("--verify loads the export with transformers, which is not installed: "
                          "pip install transformers==5.23.0 (the project's test extra)") from None

    from ..model.io import load_model

    model_dir = resolve_model_dir(source)
    ours = load_model(model_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    T = min(seq_len, hf.config.max_position_embeddings)
    idx = torch.randint(0, ours.cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = (hf(input_ids=idx).logits - ours(idx).logits.float()).abs().max().item()
    if not diff <= PARITY_ATOL:
        raise ExportError(
            f"{hf_dir} ({type(hf).__name__}) does not reproduce {model_dir}: max |logit difference| {diff:.3g} > "
            f"{PARITY_ATOL:g} (fp32); this model variant is not expressed exactly by the exported class"
        )
    return diff
