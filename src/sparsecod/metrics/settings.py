"""Settings of the metric suite: the `analysis:` section of a workflow config (protocol §1.6, §2 M3-M11).

Defaults are the protocol's paper values; the smoke and mini scales shrink counts and window lengths.
Keys shared with the workflow schema: seed, window, samples, jacobian_samples, attention_lengths,
attention_samples, ppl_tokens. The other keys tune memory/speed or select optional outputs and
default to the protocol's choices. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..model.config import ConfigError

WEIGHT_EPS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)  # M7, Q2
ATTENTION_EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)  # M8, Q2
CPU_CHAIN_TOKENS, GPU_CHAIN_TOKENS = 4096, 32_768
WORKFLOW_ONLY = frozenset({"one_job_per_run"})  # keys of the workflow's analysis section that are not ours


@dataclass(frozen=True)
class AnalysisSettings:
    """Sample sets and knobs of the metric suite.

    seed, window, samples, jacobian_samples: ANALYSIS_SET (protocol §1.6: 42, 512, 100, first 50 for M3).
    attention_lengths, attention_samples: T_e values and ATTN_SET(T_e) size (M8/M9, Q11).
    ppl_tokens: PPL_SET = this prefix of the held-out stream (M11, Q5); ppl_seq_len: its window length
    (null = the run's train.seq_len from run.yaml).
    batch_tokens (M4-M6, M10, analysis loss), jacobian_batch_tokens (M3), ppl_batch_tokens (M11): tokens per
    forward, i.e. micro-batches of max(1, tokens // window) windows (protocol: 4 and 2 windows of 512; results do
    not depend on them). jacobian_chunk: basis vectors per vmapped VJP call. chain_tokens: most tokens of
    intervened runs (skip / swap / replacement, M4-M6) evaluated together in batched block calls (memory
    ≈ chain_tokens·d per state; 0 = one run at a time; null = 4096 on CPU, where larger batches fall out of
    cache, 32768 on GPUs). attention_tile_elements: most
    attention probabilities materialized at once (M8/M9 memory bound; 2^24 = 64 MB fp32).
    jacobian_layers: layers whose J̄ is saved for heatmaps (null = L−2 and 1, 8, 16, 24, 30 clamped, M3b/Q13).
    usefulness_tau: τ of M6; usefulness_transpose_bug: also report the released code's x Wᵀ + b variant (D1).
    weight_eps, attention_eps: threshold sweeps of M7 and M8 (Q2).
    init_control: also analyse the run's untrained step-0 weights (rebuilt from its seed, same windows) into
    analysis/init/ (the control of every claim, plots/claims.py). bootstrap_resamples: window-bootstrap resamples
    of each score's interval (`ci.*` in the JSON; 0 = none).
    """

    seed: int = 42
    window: int = 512
    samples: int = 100
    jacobian_samples: int = 50
    attention_lengths: tuple[int, ...] = (512, 1024, 2048, 4096, 8192)
    attention_samples: int = 16
    ppl_tokens: int = 10_000_000
    ppl_seq_len: int | None = None
    batch_tokens: int = 2048
    jacobian_batch_tokens: int = 1024
    jacobian_chunk: int = 64
    chain_tokens: int | None = None
    attention_tile_elements: int = 1 << 24
    ppl_batch_tokens: int = 16_384
    jacobian_layers: tuple[int, ...] | None = None
    usefulness_tau: float = 0.1
    usefulness_transpose_bug: bool = True
    weight_eps: tuple[float, ...] = WEIGHT_EPS
    attention_eps: tuple[float, ...] = ATTENTION_EPS
    init_control: bool = True
    bootstrap_resamples: int = 999

    def __post_init__(self) -> None:
        for key in _INT_KEYS:  # YAML writes 1.0e+7 as a float
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _as_int(value, key))
        for key in ("attention_lengths", "jacobian_layers"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, tuple(_as_int(v, key) for v in value))
        for key in ("weight_eps", "attention_eps"):
            object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))
        positive = ("samples", "jacobian_samples", "attention_samples", "batch_tokens", "jacobian_batch_tokens",
                    "jacobian_chunk", "attention_tile_elements", "ppl_batch_tokens")
        if self.chain_tokens is not None and self.chain_tokens < 0:
            raise ConfigError(f"analysis.chain_tokens must be >= 0 (0 = no batching of runs), got {self.chain_tokens}")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"analysis.{key} must be >= 1, got {getattr(self, key)}")
        if self.window < 2:
            raise ConfigError(f"analysis.window must be >= 2 (one target per window), got {self.window}")
        if self.ppl_tokens < 2:
            raise ConfigError(f"analysis.ppl_tokens must be >= 2, got {self.ppl_tokens}")
        if self.ppl_seq_len is not None and self.ppl_seq_len < 2:
            raise ConfigError(f"analysis.ppl_seq_len must be >= 2 or null, got {self.ppl_seq_len}")
        if self.jacobian_samples > self.samples:
            raise ConfigError(
                f"analysis.jacobian_samples={self.jacobian_samples} must be <= analysis.samples={self.samples} "
                "(the Jacobian uses the first windows of ANALYSIS_SET)"
            )
        if not self.attention_lengths or min(self.attention_lengths) < 2:
            raise ConfigError(f"analysis.attention_lengths must list lengths >= 2, got {self.attention_lengths}")
        for key in ("weight_eps", "attention_eps"):
            if not getattr(self, key) or min(getattr(self, key)) <= 0:
                raise ConfigError(f"analysis.{key} must list thresholds > 0, got {getattr(self, key)}")
        if self.bootstrap_resamples < 0:
            raise ConfigError(f"analysis.bootstrap_resamples must be >= 0 (0 = no intervals), "
                              f"got {self.bootstrap_resamples}")
        if self.usefulness_tau < 0:
            raise ConfigError(f"analysis.usefulness_tau must be >= 0, got {self.usefulness_tau}")

    @property
    def micro_batch(self) -> int:
        """ANALYSIS_SET windows per forward (M4-M6, M10)."""
        return max(1, self.batch_tokens // self.window)

    @property
    def jacobian_micro_batch(self) -> int:
        return max(1, self.jacobian_batch_tokens // self.window)

    def chain_tokens_for(self, device_type: str) -> int:
        """chain_tokens, or its device default when unset."""
        if self.chain_tokens is not None:
            return self.chain_tokens
        return CPU_CHAIN_TOKENS if device_type == "cpu" else GPU_CHAIN_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str = "analysis") -> AnalysisSettings:
        """Build from a flat mapping of the keys above; unknown keys fail naming the known ones."""
        data = {k: v for k, v in (data or {}).items() if k not in WORKFLOW_ONLY}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown {where} key(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as err:  # e.g. a list where a number belongs
            raise ConfigError(f"{where}: {err}") from None


_INT_KEYS = ("seed", "window", "samples", "jacobian_samples", "attention_samples", "ppl_tokens", "ppl_seq_len",
             "batch_tokens", "jacobian_batch_tokens", "jacobian_chunk", "chain_tokens", "attention_tile_elements",
             "ppl_batch_tokens", "bootstrap_resamples")


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"analysis.{key} must be an integer (or a list of integers), got {value!r}")
    return int(value)


def read_settings_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A YAML file that is a workflow config (its `analysis:` section is used) or a flat settings mapping.

    Returns (settings mapping, the whole workflow config or None when the file is a flat mapping).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"analysis config {path} does not exist (give a workflow config or a settings YAML)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping (a workflow config or analysis settings)")
    if "analysis" in data:
        section = data["analysis"] or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: the analysis section must be a mapping")
        return dict(section), data
    return data, None
