"""`AnalysisSettings`: the `analysis:` section of a workflow config (protocol §1.6, §2 M3-M11).

Defaults are the protocol's paper values; the smoke and mini scales shrink counts and window lengths. The keys
that tune memory/speed (batch_tokens, ...) do not change results. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from .errors import ConfigError
from .keys import Bool, Int, Real, from_mapping, key, key_names, section

Metric = Literal["weight_sparsity", "perplexity", "kurtosis", "jacobian", "causal", "permutation", "usefulness",
                 "attention"]
METRICS = get_args(Metric)  # the metric families (M3-M11) a group's `analyses` names
WEIGHT_EPS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)  # M7, Q2
ATTENTION_EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)  # M8, Q2
CPU_CHAIN_TOKENS, GPU_CHAIN_TOKENS = 4096, 32_768

_Positive = dict(ge=1)
Length = Annotated[Int, Field(ge=2)]
Layer = Annotated[Int, Field(ge=0)]
Threshold = Annotated[Real, Field(gt=0)]


@section("analysis")
class AnalysisJobs:
    """The workflow's own keys of the `analysis:` section: how the analysis is laid out in jobs."""

    one_job_per_run: Bool = key(False, "false: one restartable job per metric family; true: one job per run "
                                       "(small scales, where start-up cost dominates)")


@section("analysis")
class AnalysisSettings:
    """Sample sets and knobs of the metric suite (protocol §1.6: ANALYSIS_SET 42, 512, 100, first 50 for M3)."""

    seed: Int = key(42, "seed of the ANALYSIS_SET window draw")
    window: Int = key(512, "ANALYSIS_SET window length (tokens)", ge=2)
    samples: Int = key(100, "ANALYSIS_SET windows (causal, permutation, usefulness)", **_Positive)
    jacobian_samples: Int = key(50, "first ANALYSIS_SET windows used for the Jacobian (M3; <= samples)", **_Positive)
    attention_lengths: tuple[Length, ...] = key((512, 1024, 2048, 4096, 8192), "T_e values of M8/M9 (Q11)",
                                             min_length=1)
    attention_samples: Int = key(16, "ATTN_SET windows per T_e (M8/M9, Q11)", **_Positive)
    ppl_tokens: Int = key(10_000_000, "PPL_SET: this prefix of the held-out stream (M11, Q5)", ge=2)
    ppl_seq_len: Int | None = key(None, "window length of PPL_SET (null = the run's train.seq_len)", ge=2)
    batch_tokens: Int = key(2048, "tokens per forward of M4-M6, M10 and the analysis loss (micro-batches of "
                                  "max(1, batch_tokens // window) windows; results do not depend on it)", **_Positive)
    jacobian_batch_tokens: Int = key(1024, "tokens per forward of M3", **_Positive)
    jacobian_chunk: Int = key(64, "basis vectors per vmapped VJP call (M3)", **_Positive)
    chain_tokens: Int | None = key(None, "most tokens of intervened runs (skip / swap / replacement, M4-M6) "
                                         "evaluated together in batched block calls (memory about chain_tokens·d "
                                         "per state; 0 = one run at a time; null = 4096 on CPU, 32768 on GPUs)",
                                   ge=0)
    attention_tile_elements: Int = key(1 << 24, "most attention probabilities materialized at once (M8/M9 "
                                                "memory bound; 2^24 = 64 MB fp32)", **_Positive)
    ppl_batch_tokens: Int = key(16_384, "tokens per forward of M11", **_Positive)
    jacobian_layers: tuple[Layer, ...] | None = key(None, "layers whose J̄ is saved for heatmaps (null = L-2 and 1, "
                                                        "8, 16, 24, 30 clamped, M3b/Q13)")
    usefulness_tau: Real = key(0.1, "τ of M6", ge=0)
    usefulness_transpose_bug: Bool = key(True, "also report the released code's x Wᵀ + b variant of M6 (D1)")
    weight_eps: tuple[Threshold, ...] = key(WEIGHT_EPS, "threshold sweep of M7 (Q2)", min_length=1)
    attention_eps: tuple[Threshold, ...] = key(ATTENTION_EPS, "threshold sweep of M8 (Q2)", min_length=1)
    init_control: Bool = key(True, "also analyse every run at its step-0 weights (rebuilt from its seed, same "
                                   "windows) into analysis/init/: the control of every claim")
    bootstrap_resamples: Int = key(999, "window-bootstrap resamples of each score's interval (ci.* in the JSON; "
                                        "0 = none)", ge=0)

    def __post_init__(self) -> None:
        if self.jacobian_samples > self.samples:
            raise ConfigError(
                f"analysis.jacobian_samples={self.jacobian_samples} must be <= analysis.samples={self.samples} "
                "(the Jacobian uses the first windows of ANALYSIS_SET)"
            )

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
    def from_mapping(cls, data: dict[str, Any] | None) -> AnalysisSettings:
        """Build from a flat mapping of the keys above (the workflow's own analysis keys are left out)."""
        data = {k: v for k, v in (data or {}).items() if k not in key_names(AnalysisJobs)}
        return from_mapping(cls, data)
