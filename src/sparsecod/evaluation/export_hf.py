"""`sparsecod export-hf`: a dense sparsecod model as a Hugging Face `LlamaForCausalLM` directory.

The architectures match exactly (spec §1.2): Pre-LN, RMSNorm with gain and no bias (fp32 normalisation),
rotate-half RoPE over the full head dim with base θ, GQA where query head h uses KV head ⌊h/G⌋, SwiGLU,
untied LM head, no biases. Our fused QKV weight ((H + 2·H_kv)·d_h, d) is split into q/k/v rows; no RoPE
permutation is needed because both use the rotate-half layout. The weight mapping lives in model/hf_llama.py
(also used to import Llama checkpoints); LayerNorm Scaling is folded into the norm gains. The vocabulary is the padded one
(embedding rows), so logits agree position for position.

Output directory (written atomically, without importing transformers):
    config.json              LlamaConfig fields (rope_theta and rope_parameters, rms_norm_eps, num_key_value_heads,
                             head_dim, vocab_size = padded vocab, tie_word_embeddings false, no biases)
    generation_config.json   eos/pad ids
    model.safetensors        fp32 weights under the Llama names
    tokenizer.json           the model's tokenizer, unchanged
    tokenizer_config.json    PreTrainedTokenizerFast with eos <|endoftext|> (and pad <|padding|> if present)
    special_tokens_map.json
MoE models are refused: no transformers architecture has exactly our router semantics (spec §1.3).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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


class ExportError(ValueError):
    """The model cannot be exported exactly (e.g. an MoE model)."""


def llama_config(cfg: ModelConfig, eos_id: int, pad_id: int | None, max_positions: int) -> dict:
    """The config.json of the equivalent LlamaForCausalLM."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.padded_vocab,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
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
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


# Our state dict -> Llama names: the one mapping (model/hf_llama.py), shared with `sparsecod analyze`'s import.
llama_state_dict = to_llama


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
    """Write `source` (a run directory or model directory) as a LlamaForCausalLM directory `out_dir` (replaced).

    max_positions (max_position_embeddings, model_max_length) defaults to the run's training T, else 2048.
    """
    model_dir = resolve_model_dir(source)
    cfg = read_model_config(model_dir)
    if cfg.moe is not None:
        raise ExportError(
            f"{model_dir} is an MoE model: export-hf supports dense models only (no transformers architecture "
            "matches our router exactly: un-renormalised top-k softmax weights, optional shared expert mixed as "
            "shared/(k+1) + k/(k+1)·routed, no QK-norm); evaluate it with the lm-eval adapter `sparsecod` instead"
        )
    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise FileNotFoundError(f"{tok_file} is missing: the model directory must hold its tokenizer")
    max_positions = max_positions or training_seq_len(model_dir) or DEFAULT_MAX_POSITIONS
    tok_config, special, eos_id, pad_id = tokenizer_files(tok_file, max_positions)

    state = llama_state_dict(load_file(str(model_dir / "model.safetensors")), cfg)
    out = Path(out_dir)
    with replace_dir_atomic(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        texts = {
            "config.json": llama_config(cfg, eos_id, pad_id, max_positions),
            "generation_config.json": {"eos_token_id": eos_id, "pad_token_id": pad_id, "bos_token_id": None},
            "tokenizer_config.json": tok_config,
            "special_tokens_map.json": special,
        }
        for name, obj in texts.items():
            (tmp / name).write_text(json.dumps(obj, indent=2) + "\n")
        shutil.copyfile(tok_file, tmp / "tokenizer.json")
    return out
