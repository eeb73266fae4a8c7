"""The metric families of `sparsecod analyze`: what each computes and how (protocol §2).

`REGISTRY` maps each name, in the fixed order the runner computes and lists them, to its `MetricSpec`: the
protocol items it computes, whether the untrained control (`analysis.init_control`) computes it too (the
claims' families), and the function that computes it from the runner's `Analysis` context (its model, windows
and settings). The CLI, the runner (`metrics.runner`), collect and the workflow (the `metric` wildcard of
analyze.smk) read the names from here; they are defined once, as the values a group's `analyses` may list
(sparsecod.config.analysis.METRICS, the computing and listing order). No torch at import: the CLI's help text is
built from it.
Every family writes `<run_dir>/analysis/<name>.{json,parquet}`; the control's go to `analysis/init/` and are
listed as `<name>@init` (`control_name`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.analysis import METRICS  # the family names, defined with the config keys (groups.<g>.analyses)

if TYPE_CHECKING:
    from .results import MetricResult
    from .runner import Analysis

INIT_SUFFIX = "@init"  # the untrained control's families, in suite.json and in collect's sources
INIT_DIR = "init"  # their files: <run_dir>/analysis/init/<name>.*


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: name, protocol items, untrained-control membership, compute(Analysis) -> MetricResult."""

    name: str
    protocol: str
    compute: Callable[[Analysis], MetricResult]
    init_control: bool = False


def _weight_sparsity(a: Analysis) -> MetricResult:
    from .weight_sparsity import compute_weight_sparsity

    return compute_weight_sparsity(a.model, a.settings.weight_eps)


def _perplexity(a: Analysis) -> MetricResult:
    from .perplexity import compute_perplexity
    from .samples import ppl_set

    s = a.settings
    windows = ppl_set(a.tokens, a.train_seq_len, s.ppl_tokens)
    return compute_perplexity(a.model, windows, a.analysis_windows, s.ppl_batch_tokens, s.micro_batch, **a.forward)


def _kurtosis(a: Analysis) -> MetricResult:
    from .kurtosis import compute_kurtosis

    return compute_kurtosis(a.model, a.analysis_windows, a.settings.micro_batch, **a.forward)


def _jacobian(a: Analysis) -> MetricResult:
    from .jacobian import compute_jacobian

    s = a.settings
    return compute_jacobian(a.model, a.analysis_windows[: s.jacobian_samples], s.jacobian_micro_batch,
                            s.jacobian_chunk, matrix_layers=s.jacobian_layers, **a.forward)


def _causal(a: Analysis) -> MetricResult:
    from .causal import compute_causal

    return compute_causal(a.model, a.analysis_windows, a.settings.micro_batch, **a.intervention)


def _permutation(a: Analysis) -> MetricResult:
    from .permutation import compute_permutation

    return compute_permutation(a.model, a.analysis_windows, a.settings.micro_batch, **a.intervention)


def _usefulness(a: Analysis) -> MetricResult:
    from .usefulness import compute_usefulness

    s = a.settings
    return compute_usefulness(a.model, a.analysis_windows, s.micro_batch, tau=s.usefulness_tau,
                              transpose_bug=s.usefulness_transpose_bug, **a.intervention)


def _attention(a: Analysis) -> MetricResult:
    from .attention import compute_attention
    from .samples import attn_set

    s = a.settings
    windows = {T: attn_set(a.tokens, T, s.attention_samples, s.seed) for T in s.attention_lengths}
    return compute_attention(a.model, windows, s.attention_eps, s.attention_tile_elements, **a.forward, **a.bootstrap)


REGISTRY: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("weight_sparsity", "M7", _weight_sparsity, init_control=True),
    MetricSpec("perplexity", "M11", _perplexity),
    MetricSpec("kurtosis", "M10 + held-out M1/M2", _kurtosis),
    MetricSpec("jacobian", "M3/M3b", _jacobian),
    MetricSpec("causal", "M4", _causal, init_control=True),
    MetricSpec("permutation", "M5", _permutation, init_control=True),
    MetricSpec("usefulness", "M6", _usefulness, init_control=True),
    MetricSpec("attention", "M8 + M9", _attention, init_control=True),
)}
if tuple(REGISTRY) != METRICS:  # the names are the config's (groups.<g>.analyses); the specs follow their order
    raise ImportError(f"metrics.registry lists {tuple(REGISTRY)}, sparsecod.config.analysis.METRICS {METRICS}")
INIT_METRICS = tuple(name for name, spec in REGISTRY.items() if spec.init_control)


def control_name(name: str) -> str:
    """The untrained control's entry of family `name` (suite.json, collect's source column)."""
    return f"{name}{INIT_SUFFIX}"


def describe() -> str:
    """'jacobian (M3/M3b), causal (M4), ...' in registry order (the CLI's help text)."""
    return ", ".join(f"{spec.name} ({spec.protocol})" for spec in REGISTRY.values())
