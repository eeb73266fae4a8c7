"""The workflow config's own sections (protocol §3): resources, evaluation, run-only keys, groups, sweeps, lr.

The registry (sparsecod.experiments) reads groups, sweeps and lr with its cross-field rules (known model and
lr names, budgets); the keys, types and bounds are these classes, which config.schema turns into the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .analysis import Metric
from .keys import Bool, Int, Real, from_mapping, key, section

Scale = Literal["paper", "mini", "smoke"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]


@section("resources")
class Resources:
    """Slurm requests per rule (executor plugin resources; slurm/config.yaml) and the runtime estimate."""

    gpu_peak_flops: Real = key(9.89e14, "peak dense bf16 FLOP/s of one GPU; the MFU in the logs is against it", gt=0)
    mfu: Real = key(0.35, "assumed model FLOPs utilisation of the runtime estimate "
                          "(6·N_active + 12·L·d·T)·tokens / (gpus·mfu·peak)", gt=0, le=1)
    runtime_margin: Real = key(1.5, "safety factor on the runtime estimate", ge=1)
    max_runtime: Int = key(1440, "minutes: the most a training job asks Slurm for; longer runs checkpoint on "
                                 "SIGURG and continue as requeued jobs", ge=10)
    gpu_mem_gb: Real = key(80, "GiB per GPU: `snakemake -n` rejects a run whose plan (`sparsecod plan`) needs more",
                           gt=0)
    train_mem_mb: Int = key(200_000, "host memory per training, analysis and evaluation job (MB)", ge=1)
    analysis_gpus: Int = key(1, "GPUs per analysis / evaluation job", ge=0)
    analysis_runtime: Int = key(240, "minutes per analysis / evaluation job", ge=1)
    cpu_mem_mb: Int = key(16_000, "host memory of CPU-only jobs (tokenize, select, collect; MB)", ge=1)
    threads: Int = key(8, "CPU threads per training / analysis / evaluation job", ge=1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resources:
        """The `resources:` section of a workflow config, defaults filled in."""
        return from_mapping(cls, config.get("resources"))


@section("evaluation")
class Evaluation:
    """M12 zero-shot downstream accuracy: the stock lm-eval tasks and the embedded pydoc_cont4 (protocol M12)."""

    tasks: tuple[str, ...] = key(("mmlu", "arc_easy", "arc_challenge", "hellaswag"), "lm-eval task names; a "
                                 "group's `evaluate` picks from them", min_length=1)
    limit: Int | None = key(None, "documents per task (per MMLU subject; null = all)", ge=1)
    batch_size: Int = key(32, "sequences per scoring forward", ge=1)
    data_dir: str | None = key(None, "local evaluation sets (HF save_to_disk layout); null = the stock Hub "
                                     "datasets (online)")
    max_length: Int | None = key(None, "context window of the scorer (null = the run's training T; RoPE "
                                       "extrapolates beyond)", ge=2)
    stock_tasks: Literal["required", "if_available"] = key(
        "required", "stock tasks without local data (data_dir) or hub: required = their evaluate jobs fail; "
                    "if_available = they leave the DAG (the small scales, offline)")
    embedded_limit: Int | None = key(None, "items scored of the embedded task pydoc_cont4 when tasks list it "
                                           "(null = all)", ge=1)


@section("run")
class RunKeys:
    """Keys of a run (under `defaults`, `groups.<g>.train`, `groups.<g>.runs.<r>`) besides TrainConfig's."""

    model: str = key(doc="model shape: a name under models:")
    lr: str | Real = key(doc="peak learning rate: a number, or a name under lr:")
    tokens: Real = key(doc="training tokens; steps = round(tokens / (global_batch * seq_len))", gt=0)
    labels: dict[str, Any] = key(doc="labels copied into the run's results (figures and tables group by them)")
    seeds: Int = key(doc="replicate seeds (seed k >= 1: run id <id>~s<k>, train.seed + k; 1 = none)", ge=1)


@section("groups")
class Group:
    """One experiment group E1-E7 (protocol §3), or lns beyond the paper."""

    runs: dict[str, Any] = key(doc="run id -> its settings (null = the group's)", min_length=1)
    train: dict[str, Any] | None = key(None, "settings of every run of the group (over defaults:)")
    analyses: tuple[Metric, ...] = key((), "metric families computed on the group's runs")
    evaluate: Bool | Annotated[tuple[str, ...], Field(min_length=1)] = key(
        False, "M12 tasks of the group's runs: true = all of evaluation.tasks, or a list of them")
    seeds: Int = key(1, "replicate seeds of every run of the group (1 = none)", ge=1)


@section("sweeps")
class SweepEntry:
    """An LR sweep (protocol Q1): `run` trained at every `grid` LR on `budget_fraction` of its budget."""

    run: str = key(doc="the base run id (of any group)")
    grid: tuple[Annotated[Real, Field(gt=0)], ...] = key(doc="learning rates tried", min_length=1)
    budget_fraction: Real = key(0.1, "share of the base run's steps each point trains", gt=0, le=1)


@section("lr")
class LrSweep:
    """An `lr:` entry that takes the winner of a sweep (by held-out loss)."""

    sweep: str = key(doc="a name under sweeps:")
    default: Real = key(1e-3, "the LR a run is planned with before the sweep has finished", gt=0)
