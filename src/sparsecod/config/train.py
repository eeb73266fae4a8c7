"""`TrainConfig`: optimisation and logging of one run (protocol §1.5; defaults are the paper's).

Keys, bounds and descriptions are the fields below (sparsecod.config.keys); the cross-field rules are in
`__post_init__`. A workflow config writes them under `defaults:`, `groups.<g>.train` and `groups.<g>.runs.<r>`.
"""

from __future__ import annotations

from typing import Literal, get_args

from .errors import ConfigError
from .keys import Bool, Int, Real, key, section

# train.precision: the Lightning precision strings this training loop supports (fp16 would need a loss scaler)
Precision = Literal["bf16-mixed", "bf16-true", "32-true", "64-true"]
PRECISIONS = get_args(Precision)
Logger = Literal["csv", "tensorboard", "wandb"]
LOGGERS = get_args(Logger)  # Lightning loggers added next to the parquet logs
SHARDED_STRATEGY = "fsdp2"  # train.strategy of sharded training (train/parallel.py); every other value is Lightning's


@section("train")
class TrainConfig:
    """Optimisation and logging of one run (protocol §1.5). steps is the schedule horizon; stop_after ends
    training early without changing the schedule (E7 stops at 1,600 of 4,768 steps)."""

    seq_len: Int = key(1024, "tokens per training window T", ge=1)
    global_batch: Int = key(256, "B: sequences per optimizer step", ge=1)
    micro_batch: Int = key(256, "sequences per device per forward; gradient accumulation fills global_batch", ge=1)
    steps: Int = key(38_147, "schedule horizon in optimizer steps (runs give tokens instead: "
                             "steps = round(tokens / (global_batch * seq_len)))", ge=1)
    stop_after: Int | None = key(None, "end training after this many steps without changing the schedule "
                                       "(null = train all steps)", ge=1)
    lr: Real = key(1e-3, "peak learning rate (runs give a number or a name under lr:)", gt=0)
    warmup_steps: Int = key(1000, "linear warmup from 0 to the peak LR (steps)", ge=0)
    min_lr_ratio: Real = key(0.1, "cosine decay to min_lr_ratio x peak at the last step", ge=0, le=1)
    weight_decay: Real = key(0.1, "AdamW λ on matrices only (not embeddings, not norm gains)", ge=0)
    beta1: Real = key(0.9, "AdamW β1", ge=0, lt=1)
    beta2: Real = key(0.95, "AdamW β2", ge=0, lt=1)
    adam_eps: Real = key(1e-8, "AdamW ε", gt=0)
    grad_clip: Real = key(1.0, "global gradient-norm clip", gt=0)
    precision: Precision = key("bf16-mixed", "Lightning precision: bf16-mixed (bf16 autocast, fp32 master weights), "
                                             "bf16-true, 32-true or 64-true; fp16 would need a loss scaler")
    seed: Int = key(6198, "seed of the initialisation and the data order")
    var_every: Int = key(1, "M1/M2 variance logging interval in steps (0 = off)", ge=0)
    kurtosis_every: Int = key(0, "M10 kurtosis logging interval in steps (0 = off; E7 sets 10)", ge=0)
    ckpt_every: Int = key(500, "checkpoint interval in steps, for resuming after preemption", ge=1)
    val_every: Int = key(0, "held-out loss every this many steps (0 = only at the end; needs val_tokens)", ge=0)
    val_tokens: Int = key(0, "held-out tokens of the validation loss (0 = none, else >= seq_len)", ge=0)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = key("auto", "Lightning accelerator")
    devices: Int = key(1, "devices per training job", ge=1)
    num_nodes: Int = key(1, "nodes per training job", ge=1)
    strategy: str = key("auto", "Lightning strategy (auto, ddp, ...) or fsdp2: weights, gradients and AdamW states "
                                "sharded per block over devices x num_nodes (train/parallel.py)")
    compile: Literal["auto", True, False] = key("auto", "torch.compile each block: auto = on for CUDA, off on CPU")
    loader_workers: Int = key(0, "DataLoader worker processes per device (0 = load in the training process)", ge=0)
    max_loss: Real = key(1000.0, "a training loss above this (or non-finite) counts as divergence and stops the run "
                                 "cleanly", gt=0)
    act_ckpt: Bool = key(False, "recompute each block in the backward (less memory, about 8/6 the FLOPs, same "
                                "results)")
    loggers: tuple[Logger, ...] = key((), "Lightning loggers next to the parquet logs (always written): csv, "
                                          "tensorboard, wandb", json_schema_extra={"uniqueItems": True})

    def __post_init__(self) -> None:
        ranks = self.micro_batch * self.devices * self.num_nodes
        if self.global_batch % ranks:
            raise ConfigError(f"train.global_batch={self.global_batch} must be a multiple of "
                              f"train.micro_batch × devices × num_nodes = {ranks}")
        if self.warmup_steps > self.steps:
            raise ConfigError(f"train.warmup_steps={self.warmup_steps} must be between 0 and train.steps={self.steps}")
        if (self.val_every or self.val_tokens) and self.val_tokens < self.seq_len:
            raise ConfigError(
                f"train.val_tokens={self.val_tokens} must be 0 (no held-out loss) or >= train.seq_len={self.seq_len}"
                " (one window); train.val_every > 0 needs it > 0"
            )
        if self.strategy == "fsdp":
            raise ConfigError(
                "train.strategy=fsdp (Lightning's FSDP1) cannot run this training loop (manual optimization, "
                "bf16 gradient reduction); use train.strategy: fsdp2"
            )
        if self.stop_after is not None and self.stop_after > self.steps:
            raise ConfigError(f"train.stop_after={self.stop_after} must be between 1 and train.steps={self.steps}")

    @property
    def grad_accum(self) -> int:
        return self.global_batch // (self.micro_batch * self.devices * self.num_nodes)

    @property
    def last_step(self) -> int:
        """Number of optimizer steps actually run."""
        return self.stop_after or self.steps

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len
