"""Typed run configuration: what one training job needs (protocol §1.5, §3).

A `RunConfig` is what the experiment registry (experiments.py) writes to
`results/runs/<run_id>/run.yaml` and what `sparsecod train` reads: the model (protocol §1.2-§1.3), the
optimisation recipe (protocol §1.5) and where the token shards are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model.config import ConfigError, ModelConfig


PRECISIONS = frozenset({"bf16-mixed", "bf16-true", "32-true", "64-true"})
LOGGERS = frozenset({"csv", "tensorboard", "wandb"})  # Lightning loggers added next to the parquet logs
SHARDED_STRATEGY = "fsdp2"  # train.strategy of sharded training (train/parallel.py); every other value is Lightning's


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and logging of one run (protocol §1.5; defaults are the paper's).

    steps is the schedule horizon (round(tokens / (global_batch * seq_len))); stop_after ends training
    early without changing the schedule (E7 stops at 1,600 of 4,768 steps). act_ckpt recomputes each block in
    the backward (memory layout only, results unchanged); loggers adds Lightning loggers (csv, tensorboard,
    wandb) next to the parquet logs. var_every / kurtosis_every / val_every = 0 switch that logging off;
    val_tokens > 0 evaluates the held-out loss on that many tokens at the end (and every val_every steps). max_loss: a training loss above it (or non-finite) counts as
    divergence and stops the run cleanly (not a paper setting; the λ=3 run's PPL 773 is loss 6.7).
    """

    seq_len: int = 1024
    global_batch: int = 256
    micro_batch: int = 256
    steps: int = 38_147
    stop_after: int | None = None
    lr: float = 1e-3
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    precision: str = "bf16-mixed"
    seed: int = 6198
    var_every: int = 1
    kurtosis_every: int = 0
    ckpt_every: int = 500
    val_every: int = 0
    val_tokens: int = 0
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    compile: bool | str = "auto"
    loader_workers: int = 0
    max_loss: float = 1000.0
    act_ckpt: bool = False
    loggers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.loggers, str) or not all(x in LOGGERS for x in self.loggers):
            raise ConfigError(f"train.loggers={self.loggers!r}: give a list of {sorted(LOGGERS)} (parquet logs are always "
                              "written)")
        object.__setattr__(self, "loggers", tuple(self.loggers))
        positive = ("seq_len", "global_batch", "micro_batch", "steps", "ckpt_every", "devices", "num_nodes")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.global_batch % (self.micro_batch * self.devices * self.num_nodes):
            raise ConfigError(
                f"train.global_batch={self.global_batch} must be a multiple of "
                f"train.micro_batch × devices × num_nodes = {self.micro_batch * self.devices * self.num_nodes}"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"train.lr must be > 0 and train.weight_decay >= 0 (got {self.lr}, {self.weight_decay})")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"train.warmup_steps={self.warmup_steps} must be between 0 and train.steps={self.steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for key in ("var_every", "kurtosis_every", "val_every", "val_tokens"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        if (self.val_every or self.val_tokens) and self.val_tokens < self.seq_len:
            raise ConfigError(
                f"train.val_tokens={self.val_tokens} must be 0 (no held-out loss) or >= train.seq_len={self.seq_len}"
                " (one window); train.val_every > 0 needs it > 0"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision={self.precision!r} is not supported; use one of {sorted(PRECISIONS)} "
                "(fp16 would need a loss scaler; the paper trains in bf16-mixed)"
            )
        if self.strategy == "fsdp":
            raise ConfigError(
                "train.strategy=fsdp (Lightning's FSDP1) cannot run this training loop (manual optimization, "
                "bf16 gradient reduction); use train.strategy: fsdp2"
            )
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"train.compile={self.compile!r} must be auto (on for CUDA), true or false")
        if self.loader_workers < 0:
            raise ConfigError(
                f"train.loader_workers must be >= 0 (0 = load in the training process), got {self.loader_workers}"
            )
        if not self.max_loss > 0:
            raise ConfigError(f"train.max_loss must be > 0, got {self.max_loss}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.steps:
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


@dataclass(frozen=True)
class RunConfig:
    """One training run: id, model, recipe, token shards. `meta` holds registry labels (group, aliases, ...)."""

    run_id: str
    model: ModelConfig
    train: TrainConfig
    data: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model": self.model.to_dict(),
            "train": {**dataclasses.asdict(self.train), "loggers": list(self.train.loggers)},
            "data": self.data,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        missing = {"run_id", "model", "train", "data"} - set(d)
        if missing:
            raise ConfigError(f"run config lacks key(s) {sorted(missing)}")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(d["train"]) - known
        if unknown:
            raise ConfigError(f"unknown train config key(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(
            run_id=d["run_id"],
            model=ModelConfig.from_dict(d["model"]),
            train=TrainConfig(**d["train"]),
            data=str(d["data"]),
            meta=dict(d.get("meta") or {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run config {path} does not exist")
        return cls.from_dict(yaml.safe_load(path.read_text()))
