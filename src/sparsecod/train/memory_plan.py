"""Peak GPU memory per device of a training job, from shapes alone (issue 16; protocol §1.2-§1.5, §3).

peak bytes per device = states + activations (+ a fixed CUDA reserve on GPUs), where
* states: fp32 parameters, gradients and both AdamW moments (16 B/param under bf16-mixed or 32-true), held in
  full by every rank under DDP plus DDP's gradient bucket (one more gradient copy), or sharded over
  devices × num_nodes under `strategy: fsdp2` plus the unsharded working set (the root unit, embedding and LM head,
  and two blocks — the current one and the prefetched one — with their gradients);
* activations: what autograd saves for the backward of one micro-batch of micro_batch × seq_len tokens, counted
  tensor by tensor from the model code (RMSNorm in fp32, matmul inputs in the autocast dtype, SDPA saves q, k, v
  and its output, SwiGLU saves gate, up, silu(gate) and their product; the MoE saves the gathered token copies,
  expert intermediates and router probabilities), the block traces of the variance/kurtosis logging (a_l, m_l),
  and the cross-entropy over the padded vocabulary (logits, log-softmax, their gradients; one chunk of
  CE_CHUNK_TOKENS at a time above it, as the chunked loss computes it). With `act_ckpt: true`
  each block keeps only its input and one block is recomputed at a time.
The gradient-accumulation case (global_batch > micro_batch × world, every paper run) holds all gradients while a
later micro-batch's activations are alive, so states and activations add up. Checked against the measured peak
of CPU steps (tests/test_memory_plan.py) and on a GPU by bench/gpu_check.py. No torch import (Snakemake reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from ..model.config import CE_CHUNK_TOKENS, ModelConfig

GIB = 2**30
CUDA_RESERVED_GIB = 1.5  # CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers per GPU
SHARDED = ("fsdp2", "fsdp")  # strategies whose states are sharded over all ranks
# bytes per parameter of (weights, gradients, AdamW states) and per saved element (activations, residual/norms)
_PRECISION = {
    "bf16-mixed": {"param": 4, "grad": 4, "optim": 8, "act": 2, "res": 4},
    "32-true": {"param": 4, "grad": 4, "optim": 8, "act": 4, "res": 4},
    "bf16-true": {"param": 2, "grad": 2, "optim": 4, "act": 2, "res": 2},
    "64-true": {"param": 8, "grad": 8, "optim": 16, "act": 8, "res": 8},
}


@dataclass(frozen=True)
class MemoryPlan:
    """The estimate for one training job, in bytes per device."""

    run_id: str
    strategy: str
    devices: int  # world size: devices × num_nodes
    micro_batch: int
    act_ckpt: bool
    state_bytes: float
    activation_bytes: float
    reserved_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.state_bytes + self.activation_bytes + self.reserved_bytes

    @property
    def gib_per_gpu(self) -> float:
        return self.total_bytes / GIB


def _bytes(train: TrainConfig) -> dict[str, int]:
    return _PRECISION.get(train.precision, _PRECISION["32-true"])


def is_sharded(train: TrainConfig) -> bool:
    return train.strategy in SHARDED


def block_params(model: ModelConfig) -> int:
    """Parameters of one block (attention, FFN or MoE, two norm gains)."""
    c = model.param_counts()
    head = model.padded_vocab * model.d_model + model.d_model
    return (c["non_embedding"] - head) // model.n_layers


def state_bytes(model: ModelConfig, train: TrainConfig) -> float:
    """Weights, gradients and AdamW moments per device under the run's strategy (+ DDP bucket / FSDP working set)."""
    b = _bytes(train)
    n = model.param_counts()["total"]
    per_param = b["param"] + b["grad"] + b["optim"]
    world = train.devices * train.num_nodes
    if is_sharded(train):
        root = 2 * model.padded_vocab * model.d_model + model.d_model  # wte, lm_head, final norm
        unsharded = (b["param"] + b["grad"]) * (root + 2 * block_params(model))
        return n * per_param / world + unsharded
    bucket = b["grad"] * n if world > 1 else 0  # DDP's gradient buckets (a second gradient copy)
    return n * per_param + bucket


def block_activation_bytes(model: ModelConfig, train: TrainConfig) -> float:
    """Bytes autograd saves per token in one block (no checkpointing), incl. the logged traces a_l, m_l."""
    b = _bytes(train)
    a, r, d = b["act"], b["res"], model.d_model
    d_kv = model.n_kv_heads * model.head_dim
    attn_norm = (2 * r + a) * d  # input, normalised (fp32), matmul input in the autocast dtype
    attn = a * (4 * d + 3 * d_kv) + 4 * model.n_heads  # qkv out, rotated q/k, SDPA out, o-proj input; logsumexp
    if model.group_size > 1:
        attn += a * 2 * (d - d_kv)  # SDPA kernels without native GQA save k, v repeated to H heads
    if model.moe is None:
        ffn_norm = (2 * r + a) * d
        ffn = 4 * a * model.d_ff  # gate, up, silu(gate), silu(gate)·up
    else:
        m = model.moe
        ffn_norm = 3 * r * d  # input, normalised, router input (fp32)
        routed = a * m.top_k * d + 4 * a * m.top_k * m.d_expert + 4 * m.top_k * d  # gathered rows, SwiGLU, y·p (fp32)
        shared = a * d + 4 * a * m.d_shared if m.d_shared else 0
        ffn = 12 * m.n_experts + routed + shared  # router logits, probabilities, logsumexp (fp32)
    traces = 2 * a * d if (train.var_every or train.kurtosis_every) else 0
    return attn_norm + attn + ffn_norm + ffn + traces


def activation_bytes(model: ModelConfig, train: TrainConfig) -> float:
    """Saved activations of one micro-batch: blocks (or their checkpointed inputs), final norm, cross-entropy."""
    b = _bytes(train)
    tokens = train.micro_batch * train.seq_len
    per_block = block_activation_bytes(model, train)
    if train.act_ckpt:
        blocks = model.n_layers * b["res"] * model.d_model + per_block  # block inputs + one recomputed block
    else:
        blocks = model.n_layers * per_block
    blocks += per_block  # the gradients in flight inside the block being back-propagated
    head = (2 * b["res"] + b["act"]) * model.d_model
    cast = b["act"] if b["act"] != 4 else 0
    # fp32 log-softmax (saved), the gradient it receives, exp(log-softmax) and the logits' gradient (+ the cast);
    # above CE_CHUNK_TOKENS the loss is chunked and recomputed, so one chunk's logits exist at a time
    logits = (16 + cast) * model.padded_vocab * min(tokens, CE_CHUNK_TOKENS)
    return tokens * (blocks + head) + logits


def plan_memory(run_id: str, model: ModelConfig, train: TrainConfig) -> MemoryPlan:
    gpu = train.accelerator in ("gpu", "cuda")
    return MemoryPlan(
        run_id=run_id, strategy=train.strategy, devices=train.devices * train.num_nodes,
        micro_batch=train.micro_batch, act_ckpt=train.act_ckpt, state_bytes=state_bytes(model, train),
        activation_bytes=activation_bytes(model, train), reserved_bytes=CUDA_RESERVED_GIB * GIB if gpu else 0.0,
    )


def plan_registry(reg: Any) -> list[MemoryPlan]:
    """One plan per training job of a `sparsecod.experiments.Registry` (canonical runs and LR-sweep points)."""
    return [plan_memory(run_id, spec.model, spec.train) for run_id, spec in reg.runs.items()]


def memory_problems(reg: Any, gpu_mem_gb: float) -> list[str]:
    """One line per GPU training job whose plan exceeds `gpu_mem_gb` GiB, naming the run and the keys to change."""
    out = []
    for plan in plan_registry(reg):
        spec = reg.runs[plan.run_id]
        if spec.train.accelerator not in ("gpu", "cuda") or plan.gib_per_gpu <= gpu_mem_gb:
            continue
        base = spec.run_id.split("@")[0]
        out.append(
            f"run {plan.run_id} needs {plan.gib_per_gpu:.1f} GiB per GPU, more than resources.gpu_mem_gb={gpu_mem_gb:g}: "
            f"set groups.{spec.group}.runs.{base} (or the group's train:) act_ckpt: true, a smaller micro_batch, "
            "strategy: fsdp2, or more devices/num_nodes (the recipe stays the same; `sparsecod plan` shows the estimate)"
        )
    return out


COLUMNS = ("run_id", "strategy", "devices", "micro_batch", "act_ckpt", "gib_per_gpu", "gpu_mem_gb")


def plan_table(plans: list[MemoryPlan], gpu_mem_gb: float, fmt: str = "table") -> str:
    """CSV (COLUMNS) or an aligned text table; runs over `gpu_mem_gb` are marked in the text table."""
    rows = [(p.run_id, p.strategy, p.devices, p.micro_batch, str(p.act_ckpt).lower(), f"{p.gib_per_gpu:.1f}",
             f"{gpu_mem_gb:g}") for p in plans]
    if fmt == "csv":
        return "\n".join([",".join(COLUMNS), *(",".join(map(str, r)) for r in rows)])
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(COLUMNS, widths)).rstrip()]
    for p, r in zip(plans, rows):
        mark = "  OVER" if p.gib_per_gpu > gpu_mem_gb else ""
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() + mark)
    return "\n".join(lines)
