"""`RunConfig`: what one training job needs (protocol §1.5, §3).

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

from ..model.config import ModelConfig
from .errors import ConfigError
from .train import TrainConfig


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
