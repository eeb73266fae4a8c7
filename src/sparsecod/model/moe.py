"""OLMoE-style dropless mixture-of-experts FFN (protocol §1.3), split into router, experts and layer.

Shapes: N tokens (batch and positions flattened), d model width, E experts, k experts per token,
h expert inner width.

Dispatch is dropless: the N·k (token, slot) pairs are sorted by expert, each expert runs only on
its own contiguous block of rows (one `grouped_mm` per projection), and results are scattered
back and summed over the k slots. Every expert never sees every token.

Host syncs and torch.compile: tokens per expert are counted on the device (`scatter_add_`, not `bincount`,
whose CUDA kernel reads its input's max back to the host), and the grouped_mm path needs no count on the host,
so a CUDA training step never waits on the MoE. Only bf16 grouped_mm has a meta function (what torch.compile
traces); in other dtypes, or with the per-expert loop, the expert computation runs eagerly inside a compiled
block (`torch.compiler.disable`, one graph break per layer), which is correct and as fast as eager.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .ffn import SwiGLU


@dataclass
class MoEAux:
    """Per-layer router statistics of one forward pass (unweighted; fp32 scalars).

    lb_loss: (E/k)·(1/N)·Σ_e c_e·P̄_e (= 1 under perfectly uniform routing);
    z_loss: mean_t logsumexp(logits_t)²; counts: (E,) (token, slot) assignments per expert.
    """

    lb_loss: torch.Tensor
    z_loss: torch.Tensor
    counts: torch.Tensor


class Router(nn.Module):
    """Bias-free linear router d -> E in fp32; softmax over all experts; top-k by probability."""

    def __init__(self, d_model: int, n_experts: int, top_k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        self.n_experts, self.top_k = n_experts, top_k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MoEAux]:
        """x (N, d) -> top-k probabilities (N, k) fp32 (not renormalized), expert ids (N, k), aux."""
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.float(), self.weight.float())
        probs = logits.softmax(dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        flat_i = top_i.flatten()
        counts = torch.zeros(self.n_experts, dtype=torch.int64, device=x.device).scatter_add_(
            0, flat_i, torch.ones_like(flat_i)
        )  # == bincount(flat_i, minlength=E) without a host sync
        N = x.shape[0]
        lb = (self.n_experts / self.top_k) * (counts.float() / N * probs.mean(dim=0)).sum()
        z = logits.logsumexp(dim=-1).square().mean()
        return top_p, top_i, MoEAux(lb_loss=lb, z_loss=z, counts=counts)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype autocast would use for a matmul here (grouped_mm ignores autocast, spec notes)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return weight.dtype


CPU_16BIT_ROW_BUCKET = 32  # see Experts.forward


def _bucketed(x: torch.Tensor, counts: torch.Tensor, bucket: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad every expert's block of rows of x (M, d) with zero rows to a multiple of `bucket`.

    Returns (x_padded (M', d), offs (E,) int32 block ends of x_padded, dest (M,) the row of x_padded holding
    each row of x). Zero rows give zero outputs and no weight gradient, so results are unchanged.
    """
    padded = (counts + bucket - 1) // bucket * bucket
    shift = ((padded.cumsum(0) - padded) - (counts.cumsum(0) - counts)).repeat_interleave(counts)
    dest = torch.arange(x.shape[0], device=x.device) + shift
    x_padded = x.new_zeros(int(padded.sum()), x.shape[1]).index_copy(0, dest, x)
    return x_padded, padded.cumsum(0).to(torch.int32), dest


def _grouped_mm_ok(dtype: torch.dtype, *widths: int) -> bool:
    """grouped_mm needs row strides that are multiples of 16 bytes."""
    size = torch.empty((), dtype=dtype).element_size()
    return hasattr(F, "grouped_mm") and all((w * size) % 16 == 0 for w in widths)


class Experts(nn.Module):
    """E SwiGLU experts stored as stacked matrices: gate/up (E, d, h), down (E, h, d)."""

    def __init__(self, n_experts: int, d_model: int, d_expert: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.up = nn.Parameter(torch.empty(n_experts, d_model, d_expert))
        self.down = nn.Parameter(torch.empty(n_experts, d_expert, d_model))

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor, impl: str = "auto") -> torch.Tensor:
        """x_sorted (M, d) rows grouped by expert, counts (E,) rows per expert -> (M, d).

        impl: "grouped_mm" (one grouped GEMM per projection), "loop" (one matmul per expert; the
        test oracle and the fallback for widths grouped_mm cannot take), or "auto".
        """
        dtype = _compute_dtype(x_sorted, self.gate)
        x = x_sorted.to(dtype)
        gate, up, down = (w.to(dtype) for w in (self.gate, self.up, self.down))
        if impl == "auto":
            impl = "grouped_mm" if _grouped_mm_ok(dtype, gate.shape[1], gate.shape[2]) else "loop"
        if torch.compiler.is_compiling() and (impl == "loop" or dtype != torch.bfloat16):
            return _eager_experts(x, counts, gate, up, down, impl)
        return _experts(x, counts, gate, up, down, impl)


def _experts(x, counts, gate, up, down, impl: str) -> torch.Tensor:
    """SwiGLU of every expert on its block of rows: x (M, d), counts (E,), gate/up (E, d, h), down (E, h, d)."""
    if impl == "grouped_mm":
        # On CPU a 16-bit GEMM of a row count not seen before costs ~20x a repeat (a kernel is built per
        # shape), and routing gives every expert a new count each step: padding the blocks to multiples of
        # 32 rows keeps the shapes few (2x faster MoE steps in bf16, bench/README.md). GPUs need no padding.
        dest = None
        if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
            x, offs, dest = _bucketed(x, counts, CPU_16BIT_ROW_BUCKET)
        else:
            offs = counts.cumsum(0).to(torch.int32)
        h = F.silu(F.grouped_mm(x, gate, offs=offs)) * F.grouped_mm(x, up, offs=offs)
        y = F.grouped_mm(h, down, offs=offs)
        return y if dest is None else y[dest]
    if impl != "loop":
        raise ValueError(f"unknown experts impl {impl!r}; use 'auto', 'grouped_mm' or 'loop'")
    outs = []
    for e, xe in enumerate(x.split(counts.tolist())):
        outs.append((F.silu(xe @ gate[e]) * (xe @ up[e])) @ down[e])
    return torch.cat(outs)


# what a compiled block calls where grouped_mm cannot be traced (module docstring)
_eager_experts = torch.compiler.disable(_experts)


class MoE(nn.Module):
    """Routed experts plus an optional shared expert, mixed as shared/(k+1) + k/(k+1)·Σ p_e·expert_e."""

    def __init__(self, cfg: ModelConfig, impl: str = "auto") -> None:
        super().__init__()
        assert cfg.moe is not None
        m = cfg.moe
        self.top_k, self.impl = m.top_k, impl
        self.router = Router(cfg.d_model, m.n_experts, m.top_k)
        self.experts = Experts(m.n_experts, cfg.d_model, m.d_expert)
        self.shared = SwiGLU(cfg.d_model, m.d_shared) if m.d_shared else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEAux]:
        """x (B, T, d) -> (output (B, T, d), router statistics)."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        N, k = flat.shape[0], self.top_k
        top_p, top_i, aux = self.router(flat)
        order = top_i.flatten().argsort(stable=True)  # (N·k,) slots sorted by expert
        y_sorted = self.experts(flat[order // k], aux.counts, self.impl)
        y_sorted = y_sorted.float() * top_p.flatten()[order].unsqueeze(-1)
        y = torch.empty_like(y_sorted).index_copy_(0, order, y_sorted)  # undo the sort
        routed = y.view(N, k, -1).sum(dim=1)
        if self.shared is not None:
            routed = self.shared(flat).float() / (k + 1) + routed * (k / (k + 1))
        return routed.to(x.dtype).view(shape), aux
