# Config -> run registry, paths and per-run resources. Everything else reads REG.
import json
import math
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, also when not installed
from sparsecod.config.analysis import AnalysisJobs  # noqa: E402
from sparsecod.config.keys import key_names  # noqa: E402
from sparsecod.config.workflow import Resources as ResourceKeys  # noqa: E402  (Snakemake has its own Resources)
from sparsecod.data.checks import plan_problems, unwritable_reason  # noqa: E402
from sparsecod.data.config import DataConfig  # noqa: E402
from sparsecod.evaluation.embedded import TASK as EMBEDDED_TASK  # noqa: E402
from sparsecod.evaluation.embedded import YAML_NAME as EMBEDDED_YAML  # noqa: E402
from sparsecod.evaluation.tasks import stock_data_problem  # noqa: E402
from sparsecod.experiments import GROUPS, WORKFLOW_CONFIG_ENV, Registry, load_config  # noqa: E402
from sparsecod.metrics.registry import METRICS  # noqa: E402  (the metric family names; no torch)
from sparsecod.model.flops import recompute_factor, train_flops  # noqa: E402
from sparsecod.train.memory_plan import memory_problems  # noqa: E402

# A --configfile (e.g. config/smoke.yaml) replaces the paper config instead of being deep-merged into it,
# so no paper-scale key can leak into a small scale. --config KEY=VALUE overrides still apply on top.
if workflow.overwrite_configfiles:
    config.clear()
    for _path in workflow.overwrite_configfiles:
        config.update(load_config(_path))
    if workflow.config_settings.overwrite_config:
        update_config(config, workflow.config_settings.overwrite_config)

validate(config, "../schemas/config.schema.yaml")
REG = Registry(config)
os.environ[WORKFLOW_CONFIG_ENV] = json.dumps(config)  # the registry of the rules' `sparsecod` verbs (no run: blocks)
RESULTS = str(REG.results)
DATA = str(REG.data_dir())
RES = vars(ResourceKeys.from_config(config))  # resources:, defaults filled in (sparsecod.config.workflow)
# analysis settings handed to `sparsecod analyze` (the job-layout switches stay in the workflow); sorted keys,
# so reordering the config (or writing it with yaml.safe_dump) re-runs nothing
ANALYSIS_SETTINGS = json.dumps(
    {k: v for k, v in config["analysis"].items() if k not in key_names(AnalysisJobs)}, sort_keys=True
)
# Every rule runs the package from this checkout, whether it is pip-installed, in a conda env or neither.
SPARSECOD = f"PYTHONPATH={workflow.basedir}/src${{PYTHONPATH:+:$PYTHONPATH}} python -m sparsecod"


CONFIG_FILES = ", ".join(str(p) for p in workflow.overwrite_configfiles) or "config/config.yaml"


def _check_paths():
    """Bad local inputs (data:, results:) fail before any job starts, naming the config key."""
    problems = plan_problems(config["data"])  # corpus files, tokenizer file, bpe:<V> minimum, ...
    if problems:
        raise WorkflowError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    reason = unwritable_reason(config["results"])
    if reason:
        raise WorkflowError(
            f"results={config['results']!r}: {reason}; set results to a writable directory, e.g. "
            "--config results=/scratch/$USER/sparsecod"
        )
    eval_dir = config["evaluation"].get("data_dir")
    if eval_dir and not Path(eval_dir).is_dir():
        raise WorkflowError(
            f"evaluation.data_dir={eval_dir!r}: directory not found. Point it at local ARC/HellaSwag/MMLU sets "
            "(HF save_to_disk layout) or set it to '' to use the hub datasets (needs network; with "
            "evaluation.stock_tasks: if_available they are skipped offline), e.g. "
            "--config \"evaluation={data_dir: ''}\""
        )


_check_paths()


def _skipped_tasks():
    """Stock tasks left out of the DAG: with evaluation.stock_tasks: if_available, all of them when neither a local
    copy (evaluation.data_dir, $SPARSECOD_EVAL_DATA) nor the hub is there (protocol M12); else none."""
    stock = [t for t in config["evaluation"]["tasks"] if t != EMBEDDED_TASK]
    if not stock or config["evaluation"].get("stock_tasks", "required") != "if_available":
        return set()
    try:
        problem = stock_data_problem(config["evaluation"].get("data_dir"))
    except FileNotFoundError as err:
        raise WorkflowError(str(err)) from None
    if problem:
        print(f"evaluation: skipping {', '.join(stock)} ({problem})", file=sys.stderr)
    return set(stock) if problem else set()


SKIPPED_TASKS = _skipped_tasks()


def eval_tasks(run_id):
    """The M12 tasks scored on a trained run: its groups' tasks less the skipped stock tasks."""
    return [t for t in REG.evaluation_tasks(run_id) if t not in SKIPPED_TASKS]


wildcard_constraints:
    run=r"[A-Za-z0-9_.=@+~-]+",
    metric="|".join(METRICS),
    sweep=r"[A-Za-z0-9_.-]+",
    group="|".join(GROUPS),


def run_spec(run_id):
    """The registry's spec of a training job's run id; an id the config does not define fails naming the config."""
    if run_id not in REG.runs:
        raise WorkflowError(f"{REG.unknown_run(run_id)} [config: {CONFIG_FILES}]")
    return REG.runs[run_id]


def no_such_target(wildcards):
    """Input of the catch-all `unknown_target` (Snakefile), for a target that names no rule and no file."""
    import difflib

    names = sorted(r.name for r in workflow.rules if r.name != "unknown_target")
    close = difflib.get_close_matches(wildcards.target, names, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise WorkflowError(
        f"{wildcards.target!r} is not a target of this workflow (config: {CONFIG_FILES}); {hint}"
        f"targets are rules (all, the groups {', '.join(GROUPS)}, fig<N>, table<N>, claims, external) or files "
        f"under {RESULTS}/"
    )


def run_dir(run_id):
    return f"{RESULTS}/runs/{REG.canonical(run_id)}"


def train_outputs(run_id):
    d = run_dir(run_id)
    return [f"{d}/summary.json", f"{d}/model/config.json"]


def analysis_outputs(run_id):
    """Analysis files of a paper run: one per metric family, or the per-run suite marker at small scales."""
    analyses = REG.spec(run_id).analyses
    if not analyses:
        return []
    d = run_dir(run_id)
    if config["analysis"].get("one_job_per_run"):
        return [f"{d}/analysis/suite.json"]
    return [f"{d}/analysis/{m}.json" for m in analyses]


def eval_outputs(run_id):
    return [f"{run_dir(run_id)}/eval/lm_eval.json"] if eval_tasks(run_id) else []


def run_outputs(run_id):
    return train_outputs(run_id) + analysis_outputs(run_id) + eval_outputs(run_id)


def group_outputs(group):
    return sorted({f for r in REG.group_ids(group) for f in run_outputs(r)})  # every seed of every run


# --- figures, tables, claims (figures.smk) ------------------------------------------------------------------
from sparsecod.plots.inventory import ITEMS  # noqa: E402

REFERENCE = f"{workflow.basedir}/config/reference"
REFERENCE_FILES = sorted(str(p) for p in Path(REFERENCE).glob("*.csv"))


def group_summaries(groups):
    return [f"{RESULTS}/summary/{g}.parquet" for g in groups]


def reported_files(item):
    """The item's output files; PNG figures and Markdown tables and claims go into the HTML report, captioned."""
    return [_reported(path, item) if path.endswith((".png", ".md")) else path for path in item.files(RESULTS)]


def _reported(path, item):
    """`path` flagged for `snakemake --report`, with the item's caption, category and labels."""
    labels = {"item": item.name, "file": Path(path).name}
    return report(path, caption="../report/item.rst", category=item.category, subcategory=item.name, labels=labels)


def all_outputs():
    """Every run's outputs (through the summary), every figure and table, and the claims verdict."""
    return [f"{RESULTS}/summary.parquet", *(f for item in ITEMS.values() for f in item.files(RESULTS))]


def train_resources(wildcards):
    """GPUs, runtime (min) and host memory of one training job (protocol §3 budgets).

    Runtime: (6·N_active + 12·L·d·T)·tokens (sparsecod.model.flops; × 8/6 with act_ckpt's recomputation) at
    resources.mfu × resources.gpu_peak_flops per GPU, × resources.runtime_margin, capped at resources.max_runtime: a longer run continues in requeued
    segments (SIGURG checkpoint-and-requeue, docs/slurm.md).
    """
    spec = run_spec(wildcards.run)
    t = spec.train
    gpus = t.devices * t.num_nodes if t.accelerator in ("gpu", "cuda") else 0
    flops = train_flops(spec.model, t.seq_len, t.tokens_per_step * t.last_step) * recompute_factor(t.act_ckpt)
    seconds = flops / (max(gpus, 1) * RES["gpu_peak_flops"] * RES["mfu"])
    minutes = max(10, math.ceil(seconds * RES["runtime_margin"] / 60))
    return {
        "gpu": gpus,
        "nodes": t.num_nodes,
        "tasks_per_node": t.devices if gpus else 1,
        "runtime": min(minutes, RES["max_runtime"]),
        "mem_mb": RES["train_mem_mb"],
    }


def _check_memory():
    """A GPU run whose planned memory per GPU exceeds resources.gpu_mem_gb fails before any job starts."""
    problem = memory_problems(REG, RES["gpu_mem_gb"])
    if problem:
        raise WorkflowError(
            problem[0] + (f" (and {len(problem) - 1} more; see `sparsecod plan`)" if len(problem) > 1 else "")
        )


_check_memory()


# --- external checkpoints (external.smk) ---------------------------------------------------------------------
import re

from sparsecod.external import EXTERNAL_ANALYSES, external_models, heldout_config  # noqa: E402

EXTERNAL = external_models(config)
EXT = f"{RESULTS}/external"
for _name, _path in EXTERNAL.items():
    if not (_path / "config.json").is_file() or not (_path / "tokenizer.json").is_file():
        raise WorkflowError(
            f"external.{_name}={str(_path)!r}: not a transformers checkpoint directory with "
            "config.json and tokenizer.json (save it with save_pretrained, tokenizer included)"
        )


def external_outputs():
    return [f"{EXT}/{name}/{f}" for name in EXTERNAL for f in ("analysis/suite.json", "figures/layers.png")]
