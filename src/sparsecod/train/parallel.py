"""Parallelism of a training run: the Lightning strategy, FSDP2 sharding, sharded checkpoints, block compilation.

The LightningModule (module.py) and the model (sparsecod.model) know nothing of sharding; everything that depends
on how parameters are laid out over devices lives here (torchtitan's `parallelize` separation):

- `build_strategy(cfg, precision)`: what `L.Trainer(strategy=...)` gets for `train.strategy`.
- `FSDP2Strategy`: `train.strategy: fsdp2`. Lightning's ModelParallelStrategy (FSDP2 device mesh, DCP loading)
  with the sharding applied by the strategy itself. Why not the alternatives: Lightning's `FSDPStrategy` (FSDP1)
  refuses manual optimization ("Manual optimization with FSDP is currently not possible", Lightning issues 19626,
  19685), refuses CPU, and reduces bf16-mixed gradients in bf16; automatic optimization would give up the
  loop's guarantees (divergence check before the update, one batch = one step with the micro-batches of spec
  §1.5). ModelParallelStrategy accepts manual optimization and CPU/gloo, but wants the LightningModule to shard
  itself in `configure_model`; this subclass shards in `setup` instead, so the module stays unaware.
- `shard_model`: `fully_shard` per block (MoE router as its own fp32 unit) and the root (embedding, final norm,
  LM head). For bf16-mixed, `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)` on the blocks: all-gathers
  and matmuls in bf16, gradients reduce-scattered and accumulated in fp32 (protocol §1.5: fp32 master weights and
  gradients); block inputs are not cast, so the residual stream stays fp32 as on the DDP path (Lightning's
  autocast still runs around the step). Gradient accumulation reduce-scatters every micro-batch (sharded gradients,
  no unsharded copy kept), which sums to the same gradient as DDP's single all-reduce.
- `clip_grad_norm`: global L2 norm over plain or sharded (DTensor) gradients, then clipping.
- `full_model`: the consolidated Transformer (rank 0) that `sparsecod.model.save_model` writes as `model/`.
- `compile_blocks`: `torch.compile` of every block's forward and of the loss head in place (`train.compile`);
  parameter names, and so state dicts and checkpoints, do not change, and FSDP's hooks stay outside the compiled
  region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.trainer.states import TrainerFn

from ..config import SHARDED_STRATEGY, TrainConfig
from ..model.transformer import Transformer
from .checkpoint_io import AtomicCheckpointIO


def build_strategy(cfg: TrainConfig, precision: str):
    """The `strategy` argument of L.Trainer for cfg.strategy ("fsdp2" -> FSDP2Strategy, else Lightning's name)."""
    if cfg.strategy == SHARDED_STRATEGY:
        return FSDP2Strategy(world_size=cfg.devices * cfg.num_nodes, precision=precision)
    return cfg.strategy


def mixed_precision_policy(precision: str):
    """MixedPrecisionPolicy for the blocks: bf16 compute, fp32 reduction under bf16-mixed; None otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision != "bf16-mixed":
        return None
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)


def shard_model(model: Transformer, mesh, precision: str) -> None:
    """fully_shard every block (and each MoE router, kept fp32), then the root; in place, idempotent."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if isinstance(model, FSDPModule):
        return
    policy = mixed_precision_policy(precision)
    block_kw = {"mesh": mesh} | ({"mp_policy": policy} if policy is not None else {})
    fp32 = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32, cast_forward_inputs=True)
    for block in model.blocks:
        router = getattr(block.ffn, "router", None)
        if router is not None and policy is not None:
            fully_shard(router, mesh=mesh, mp_policy=fp32)  # protocol §1.3: the router computes in fp32
        fully_shard(block, **block_kw)
    fully_shard(model, mesh=mesh)  # fp32 embedding (residual stream), final norm and LM head (autocast matmul)


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


class FSDP2Strategy(ModelParallelStrategy):
    """ModelParallelStrategy that applies `shard_model` itself (see the module docstring for why).

    Data parallel over all `world_size` devices (no tensor parallelism). Checkpoints are sharded
    (torch.distributed.checkpoint) and written atomically by the run's AtomicCheckpointIO; Lightning's own loader
    restores them (weights, AdamW moments, loops, callbacks, scheduler).
    """

    def __init__(self, world_size: int, precision: str) -> None:
        super().__init__(data_parallel_size=world_size, tensor_parallel_size=1, save_distributed_checkpoint=True)
        self._precision_name = precision

    def setup(self, trainer) -> None:
        assert self.model is not None and self.accelerator is not None
        self.accelerator.setup(trainer)
        self.model_to_device()
        shard_model(self.lightning_module.model, self.device_mesh["data_parallel"], self._precision_name)
        self.model = self.precision_plugin.convert_module(self.model)
        self.barrier()
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        """Sharded, atomic (AtomicCheckpointIO.save_sharded); collective over all ranks."""
        io = self.checkpoint_io
        if not isinstance(io, AtomicCheckpointIO):
            raise TypeError(f"{type(self).__name__} writes through AtomicCheckpointIO, got {type(io).__name__}")
        path = Path(self.broadcast(str(filepath)))
        shards = {"state_dict": checkpoint.pop("state_dict")}
        shards |= {f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))}
        io.save_sharded(checkpoint, shards, path, rank=self.global_rank, barrier=self.barrier)


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global L2 norm of the gradients of `params` (plain or DTensor shards) before clipping; clips if max_norm > 0."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):  # partial norms of the shards -> the global norm on every rank
        total = total.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None], max_norm, total)
    return total


def full_model(trainer, model: Transformer) -> Transformer | None:
    """The trained Transformer with full (unsharded) weights on rank 0, None on other ranks. Collective."""
    if not is_sharded(model):
        return model if trainer.is_global_zero else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not trainer.is_global_zero:
        return None
    with torch.device("meta"):
        full = Transformer(model.cfg)
    full.load_state_dict(state, assign=True)
    return full


def resolve_compile(setting: str | bool, device_type: str) -> bool:
    """train.compile: "auto" compiles on CUDA only (CPU compile time dominates short runs); true/false as given."""
    if isinstance(setting, bool):
        return setting
    return device_type == "cuda" if setting == "auto" else setting == "true"


def compile_blocks(model: Transformer) -> None:
    """torch.compile every block's forward and the training loss (`lm_loss`) in place.

    Parameter names, state dicts and FSDP hooks are unchanged (the compiled functions are instance attributes;
    the modules stay where they are). Idempotent.
    """
    for block in model.blocks:
        if not getattr(block, "_sparsecod_compiled", False):
            block.forward = torch.compile(block.forward)
            block._sparsecod_compiled = True
    if not getattr(model, "_sparsecod_compiled", False):
        model.lm_loss = torch.compile(model.lm_loss)
        model._sparsecod_compiled = True
