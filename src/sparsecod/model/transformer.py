"""Pre-LN decoder-only transformer (protocol §1.2, §1.3) with one explicit intervention mechanism.

Notation of the spec: x_0 embeddings; x_l input of block l; inside block l
    a_l = Attn(N_a(x_l)),  u_l = x_l + a_l,  m_l = FFN(N_m(u_l)),  x_{l+1} = u_l + m_l;
x_L is the last block's output before the final norm N_f. Shapes: B batch, T positions, d width,
V padded vocabulary.

Interventions (metrics M3-M6) all go through `Transformer.run_blocks(x, blocks, ctx)`: the caller
passes any sequence of block-like modules (the model's own blocks reordered or omitted, an
`AffineBlock`, ...) and a `ForwardContext` that collects per-block traces and MoE router stats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, RotaryEmbedding
from .config import CE_CHUNK_TOKENS, ModelConfig
from .ffn import SwiGLU
from .moe import MoE, MoEAux


class RMSNorm(nn.Module):
    """s · g ⊙ x / sqrt(mean_j x_j² + eps), normalized in fp32, learnable gain (init 1), no bias.

    `scale` s is a constant, not a parameter (1 except under LayerNorm Scaling, see `norm_scale`).
    """

    def __init__(self, d: int, eps: float, scale: float = 1.0) -> None:
        super().__init__()
        self.eps, self.scale = eps, scale
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)
        y = self.weight.float() * xf
        return (y if self.scale == 1.0 else y * self.scale).to(x.dtype)


@dataclass
class BlockTrace:
    """What one block saw and produced: tensors (B, T, d); attn_probs (B, H, T, T) on request."""

    input: torch.Tensor
    attn_out: torch.Tensor | None
    ffn_out: torch.Tensor | None
    output: torch.Tensor
    attn_probs: torch.Tensor | None = None


class ForwardContext:
    """Per-forward state shared by all blocks: RoPE tables, capture switches, collected results.

    A plain class, not a dataclass: FSDP2 rebuilds dataclass arguments of a sharded module (dataclasses.replace,
    to hook their tensors), which would leave every block appending to its own copy of `traces` / `moe_aux`.
    """

    def __init__(
        self, cos: torch.Tensor, sin: torch.Tensor, capture: bool = False, attn_probs: bool = False,
        traces: list[BlockTrace] | None = None, moe_aux: list[MoEAux] | None = None,
    ) -> None:
        self.cos, self.sin, self.capture, self.attn_probs = cos, sin, capture, attn_probs
        self.traces: list[BlockTrace] = [] if traces is None else traces
        self.moe_aux: list[MoEAux] = [] if moe_aux is None else moe_aux


def norm_scale(cfg: ModelConfig, index: int) -> float:
    """Factor on block `index`'s (0-based) two pre-norm outputs: 1 for Pre-LN, 1/√(index + 1) for LayerNorm Scaling.

    LayerNorm Scaling (Sun et al. 2025, "The Curse of Depth in Large Language Models", arXiv 2502.05795:
    h = LN(x)·1/√ℓ with ℓ the 1-based layer). The released code (github.com/lmsdss/LayerNorm-Scaling,
    peft_pretraining/modeling_llama.py @33c3899, `LlamaDecoderLayer(config, _idx)` built from
    `range(num_hidden_layers)`, branch `norm_type == 'LNS'`: `scale_factor = 1 / math.sqrt(self.layer_index + 1)`)
    applies it to the outputs of both input_layernorm and post_attention_layernorm; the first block is scaled by 1.
    """
    return 1.0 / math.sqrt(index + 1) if cfg.norm_scaling == "lns" else 1.0


class Block(nn.Module):
    """x <- x + Attn(N_a(x)); x <- x + FFN(N_m(x)). The FFN is SwiGLU or MoE.

    Under LayerNorm Scaling N_a and N_m carry the factor norm_scale(cfg, index), a constant of the block: a block
    moved by an intervention (M5) keeps its own factor.
    """

    def __init__(self, cfg: ModelConfig, index: int = 0) -> None:
        super().__init__()
        scale = norm_scale(cfg, index)
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps, scale)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps, scale)
        self.ffn: nn.Module = MoE(cfg) if cfg.moe is not None else SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        a, probs = self.attn(self.attn_norm(x), ctx.cos, ctx.sin, return_probs=ctx.attn_probs)
        u = x + a
        m = self.ffn(self.ffn_norm(u))
        if isinstance(m, tuple):
            m, aux = m
            ctx.moe_aux.append(aux)
        y = u + m
        if ctx.capture:
            ctx.traces.append(BlockTrace(x, a, m, y, probs))
        return y


class AffineBlock(nn.Module):
    """Token-wise affine replacement of a block, x -> x W + b (usefulness score M6).

    weight (d_in, d_out), bias (d_out,). No attention, no mixing across tokens.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        y = (x.to(self.weight.dtype) @ self.weight + self.bias).to(x.dtype)
        if ctx.capture:
            ctx.traces.append(BlockTrace(x, None, None, y))
        return y


def chunked_cross_entropy(h: torch.Tensor, lm_head: nn.Linear, targets: torch.Tensor,
                          chunk: int = CE_CHUNK_TOKENS) -> torch.Tensor:
    """Mean CE of lm_head(h) against targets (-100 = ignore) without holding all logits: h (B, T, d), targets (B, T).

    Each chunk of `chunk` tokens computes its logits (fp32 for the softmax), sums its losses and frees them;
    backward recomputes one chunk's logits at a time (activation checkpointing of the head only), so the
    (B·T, V) fp32 logits and their softmax never exist at once. Same value as one F.cross_entropy up to the
    order of the sum.
    """
    from torch.utils.checkpoint import checkpoint

    def chunk_loss(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm_head(hc).float(), tc, ignore_index=-100, reduction="sum")

    flat_h, flat_t = h.flatten(0, 1), targets.flatten()
    total = sum(
        checkpoint(chunk_loss, hc, tc, use_reentrant=False)
        for hc, tc in zip(flat_h.split(chunk), flat_t.split(chunk))
    )
    return total / (flat_t != -100).sum()


@dataclass
class ModelOutput:
    """logits (B, T, V) or None; loss: mean CE (+ weighted MoE aux loss) when targets were given."""

    logits: torch.Tensor | None
    loss: torch.Tensor | None
    ce_loss: torch.Tensor | None
    aux_loss: torch.Tensor | None
    ctx: ForwardContext


class Transformer(nn.Module):
    """Embedding -> L blocks -> final RMSNorm -> untied LM head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.padded_vocab, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.final_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.padded_vocab, bias=False)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std²) for every matrix (embedding, linears, router, experts); norm gains 1 (protocol §1.2)."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=self.cfg.init_std)

    # --- the three stages; metrics compose them with their own block sequences ------------
    def context(self, T: int, device: torch.device, capture: bool = False, attn_probs: bool = False) -> ForwardContext:
        cos, sin = self.rope(T, device)
        return ForwardContext(cos=cos, sin=sin, capture=capture, attn_probs=attn_probs)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> x_0 (B, T, d)."""
        return self.wte(idx)

    def run_blocks(self, x: torch.Tensor, blocks: Sequence[nn.Module], ctx: ForwardContext) -> torch.Tensor:
        """Apply `blocks` in order to the residual stream x (B, T, d)."""
        for block in blocks:
            x = block(x, ctx)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """x_L (B, T, d) -> logits (B, T, V) through the final norm and the LM head."""
        return self.lm_head(self.final_norm(x))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        blocks: Sequence[nn.Module] | None = None,
        capture: bool = False,
        attn_probs: bool = False,
        return_logits: bool = True,
    ) -> ModelOutput:
        """idx (B, T) token ids; targets (B, T) with -100 = ignore. `blocks` defaults to self.blocks."""
        ctx = self.context(idx.shape[1], idx.device, capture=capture, attn_probs=attn_probs)
        x = self.run_blocks(self.embed(idx), self.blocks if blocks is None else blocks, ctx)
        ce = loss = aux = logits = None
        if targets is not None and not return_logits:
            ce = self.lm_loss(x, targets)
        else:
            logits = self.head(x)
            if targets is not None:
                ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        if targets is not None:
            aux = self.aux_loss(ctx)
            loss = ce if aux is None else ce + aux
        return ModelOutput(logits if return_logits else None, loss, ce, aux, ctx)

    def lm_loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token CE of x_L (B, T, d) against targets (B, T) (-100 = ignore), logits never returned.

        Above CE_CHUNK_TOKENS tokens the loss is chunked (`chunked_cross_entropy`): no full fp32 logits.
        """
        if x.shape[:-1].numel() > CE_CHUNK_TOKENS:
            return chunked_cross_entropy(self.final_norm(x), self.lm_head, targets)
        return F.cross_entropy(self.head(x).float().flatten(0, 1), targets.flatten(), ignore_index=-100)

    def aux_loss(self, ctx: ForwardContext) -> torch.Tensor | None:
        """(w_lb/L)·Σ_l L_lb,l + (w_z/L)·Σ_l L_z,l over the MoE layers that ran (protocol §1.3); None if dense."""
        if not ctx.moe_aux or self.cfg.moe is None:
            return None
        m, L = self.cfg.moe, self.cfg.n_layers
        lb = sum(a.lb_loss for a in ctx.moe_aux) / L
        z = sum(a.z_loss for a in ctx.moe_aux) / L
        return m.lb_weight * lb + m.z_weight * z
