"""Causal self-attention with RoPE and grouped-query KV sharing (protocol §1.2, M8/M9).

Shapes: B batch, T positions, H query heads, H_kv KV heads, G = H/H_kv, d_h head dim.
Query head h uses KV head floor(h/G) (KV heads repeated for G consecutive query heads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class RotaryEmbedding(nn.Module):
    """RoPE, rotate-half (non-interleaved) convention, base theta, full head dim, fp32 (protocol §1.2)."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta

    def forward(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (T, d_h) in fp32."""
        inv_freq = 1.0 / self.theta ** (torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim)
        freqs = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, heads, T, d_h) by position; computed in fp32, returned in x's dtype."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def causal_attention_probs(q: torch.Tensor, k: torch.Tensor, q_start: int = 0) -> torch.Tensor:
    """Explicit causal softmax (fp32): q (B, H, T_q, d_h), k (B, H_kv, T_k, d_h) -> A (B, H, T_q, T_k).

    Query row r is position q_start + r, key column j is position j (default: T_q = T_k, q_start = 0,
    the full T×T map; a query chunk of a long sequence passes q_start and keys 0..q_start+T_q-1, M8/M9).
    Entries of future positions (j > q_start + r) are exactly 0. Used for analysis, never for training.
    """
    G = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(G, dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    T_q, T_k = q.shape[-2], k.shape[-2]
    mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).triu(1 + q_start)
    return scores.masked_fill(mask, float("-inf")).softmax(dim=-1)


class Attention(nn.Module):
    """Fused QKV projection d -> (H + 2 H_kv) d_h, RoPE on q and k, causal SDPA, output projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def qkv_heads(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d) -> rotated q (B, H, T, d_h), rotated k and v (B, H_kv, T, d_h)."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim],
            dim=-1,
        )
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, return_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d) -> (output (B, T, d), attention probabilities (B, H, T, T) or None)."""
        B, T, d = x.shape
        q, k, v = self.qkv_heads(x, cos, sin)
        probs = None
        if return_probs:
            probs = causal_attention_probs(q, k)
            G = self.n_heads // self.n_kv_heads
            y = (probs @ v.float().repeat_interleave(G, dim=1)).to(v.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.out(y.transpose(1, 2).reshape(B, T, d)), probs
