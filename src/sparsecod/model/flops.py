"""Training FLOPs per token, the one formula behind the Slurm runtime estimate and the logged MFU (issue 16).

FLOPs per token (forward + backward) = 6·N_active + 12·L·d·T:
6·N_active for the matrix multiplies of the active non-embedding parameters (protocol §1.4; the LM head included,
the input embedding is a lookup), and 12·L·d·T for the attention scores and the weighted sum over T keys
(Q·Kᵀ and A·V: 2·2·d·T forward per layer and token, ×3 with the backward; counted for the full T×T square as
PaLM and OLMo-core do, so MFU figures compare with theirs). No torch import: Snakemake reads it at parse time.
"""

from __future__ import annotations

from .config import ModelConfig


def attention_flops_per_token(model: ModelConfig, seq_len: int) -> float:
    """12·L·d·T: attention score and value FLOPs per token, forward + backward."""
    return 12.0 * model.n_layers * model.d_model * seq_len


def flops_per_token(model: ModelConfig, seq_len: int) -> float:
    """6·N_active + 12·L·d·T training FLOPs per token (forward + backward)."""
    return 6.0 * model.param_counts()["active"] + attention_flops_per_token(model, seq_len)


def train_flops(model: ModelConfig, seq_len: int, tokens: float) -> float:
    """Training FLOPs of `tokens` tokens at context length `seq_len`."""
    return flops_per_token(model, seq_len) * tokens


def mfu(tokens_per_s: float, model: ModelConfig, seq_len: int, peak_flops: float, devices: int = 1) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over `devices` × `peak_flops` (peak FLOP/s of one device)."""
    return tokens_per_s * flops_per_token(model, seq_len) / (peak_flops * devices)


def recompute_factor(act_ckpt: bool) -> float:
    """Executed over model FLOPs: activation checkpointing runs every block's forward (2 of the 6) twice."""
    return 8.0 / 6.0 if act_ckpt else 1.0
