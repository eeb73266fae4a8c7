"""Run registry: expands a workflow config's experiment groups E1-E7 into run specs (protocol §3, Q1).

A workflow config (config/{config,mini,smoke}.yaml) names model shapes (`models`), training defaults
(`defaults`), learning rates (`lr`: a number or the winner of a sweep in `sweeps`) and the groups
(`groups`: depth, weight_decay, seqlen, gqa, moe, ablation, sublayer; lns beyond the paper), each with
group-level training settings and its runs. This module turns that into:

* `RunSpec`s with stable ids (`depth-L16`, `wd-0.1`, `seq-2048`, `gqa-G4`, `moe-2BA400M`, `abl-A4`, `sub-L32`);
* LR sweep points `<base>@lr<value>` (e.g. `depth-L16@lr1e-3`) trained on `budget_fraction` of the base budget;
* replicate seeds (`seeds: N` on a group or a run): seed 0 keeps the bare id and `train.seed`, seed k ≥ 1 is
  `<id>~s<k>` trained with `train.seed + k` (e.g. `depth-L16~s1`); a sweep tunes on its base run's seed 0 and
  every seed of a run takes that winner;
* aliases: identical configurations train once (seq-4096 = gqa-G1 = dense-1B, protocol §3 E3/E4/E5);
* step counts `round(tokens / (global_batch * seq_len))` (protocol §3; FLOP-matched GQA token counts verbatim, D17).

Nothing here imports torch, so Snakemake parses the registry in well under a second.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config.errors import ConfigError
from .config.keys import check_keys, from_mapping, key_names
from .config.run import RunConfig
from .config.train import TrainConfig
from .config.workflow import Group, LrSweep, Resources, RunKeys, SweepEntry
from .model.config import ModelConfig

PAPER_GROUPS = ("depth", "weight_decay", "seqlen", "gqa", "moe", "ablation", "sublayer")  # E1-E7
GROUPS = (*PAPER_GROUPS, "lns")  # lns: beyond the paper (E1 with LayerNorm Scaling, issue 19)
RUN_KEYS = (*key_names(TrainConfig), *key_names(RunKeys))  # what defaults, a group's train and a run may set
SEED_SEP = "~s"  # replicate k of run R is R~s<k> (k >= 1); seed 0 is R itself


@dataclass(frozen=True)
class RunSpec:
    """One training job. `lr_sweep` names the sweep whose winner sets train.lr (train.lr is then a placeholder)."""

    run_id: str
    group: str
    model: ModelConfig
    train: TrainConfig
    lr_sweep: str | None = None
    labels: dict[str, Any] = field(default_factory=dict, compare=False)
    analyses: tuple[str, ...] = field(default=(), compare=False)
    evaluate: tuple[str, ...] = field(default=(), compare=False)  # M12 tasks (protocol E1: all four; E6: ARC-C, HellaSwag)
    sweep_of: str | None = field(default=None, compare=False)
    replica_of: str | None = field(default=None, compare=False)  # the seed-0 run id of a replicate seed
    seed_index: int = field(default=0, compare=False)

    @property
    def training_key(self) -> tuple:
        """Everything that determines the trained weights; equal keys train once."""
        return (self.model.replace(name=""), self.train, self.lr_sweep)


@dataclass(frozen=True)
class Sweep:
    """LR sweep (protocol Q1): `base` run trained at every `grid` LR on `budget_fraction` of its budget."""

    name: str
    base: str
    grid: tuple[float, ...]
    budget_fraction: float
    points: tuple[str, ...]


def lr_tag(lr: float) -> str:
    """1e-3 -> '1e-3', 6e-4 -> '6e-4', 2.5e-4 -> '2.5e-4'."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


class Registry:
    """All runs of one workflow config. Lookups accept aliases."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.results = Path(config.get("results", "results"))
        self.models = {name: _model(name, d) for name, d in _section(config, "models").items()}
        self.lrs = dict(_section(config, "lr"))
        self.runs: dict[str, RunSpec] = {}
        self.aliases: dict[str, str] = {}
        self._alias_specs: dict[str, RunSpec] = {}
        self.group_runs: dict[str, list[str]] = {}  # the paper's run ids (seed 0) of each group
        self._replicas: dict[str, list[str]] = {}  # run id -> its seeds' ids (itself first)
        self.sweeps: dict[str, Sweep] = {}
        for group in GROUPS:
            self._add_group(group, _section(config, "groups").get(group))
        unknown = set(_section(config, "groups")) - set(GROUPS)
        if unknown:
            raise ConfigError(f"unknown group(s) {sorted(unknown)} under groups; known: {', '.join(GROUPS)}")
        for name, sweep in _section(config, "sweeps").items():
            self._add_sweep(name, sweep)
        for name, value in self.lrs.items():
            if isinstance(value, dict) and value.get("sweep") not in self.sweeps:
                raise ConfigError(f"lr.{name} refers to sweep {value.get('sweep')!r}, not defined under sweeps")

    # --- construction -------------------------------------------------------------------------
    def _add_group(self, group: str, spec: dict[str, Any] | None) -> None:
        if spec is None:
            raise ConfigError(f"groups.{group} is missing: every scale defines all groups {', '.join(GROUPS)}")
        check_keys(spec, key_names(Group), f"groups.{group}")
        base = {**_section(self.config, "defaults"), **(spec.get("train") or {})}
        self.group_runs[group] = []
        for run_id, overrides in (spec.get("runs") or {}).items():
            settings = {**base, **({"seeds": spec["seeds"]} if "seeds" in spec else {}), **(overrides or {})}
            n_seeds = _seed_count(settings.pop("seeds", 1), f"groups.{group}.runs.{run_id}.seeds")
            run = self._make_run(group, run_id, settings,
                                 tuple(spec.get("analyses", ())), self._group_tasks(group, spec.get("evaluate")))
            self.group_runs[group].append(run_id)
            self._replicas[run_id] = []
            for k in range(n_seeds):
                replica = run if k == 0 else dataclasses.replace(
                    run, run_id=f"{run_id}{SEED_SEP}{k}", train=dataclasses.replace(run.train, seed=run.train.seed + k),
                    replica_of=run_id, seed_index=k)
                self._register(replica)
                self._replicas[run_id].append(replica.run_id)

    def _group_tasks(self, group: str, evaluate: Any) -> tuple[str, ...]:
        """`groups.<g>.evaluate`: true = every task of `evaluation.tasks`, a list = those of them, false = none."""
        tasks = self._all_tasks()
        if evaluate is None or evaluate is False:
            return ()
        if evaluate is True:
            return tasks
        unknown = [t for t in evaluate if t not in tasks] if isinstance(evaluate, list) else [evaluate]
        if unknown:
            raise ConfigError(f"groups.{group}.evaluate={evaluate!r}: give true, false or a list of tasks from "
                              f"evaluation.tasks {list(tasks)}; not there: {unknown}")
        return tuple(t for t in tasks if t in evaluate)

    def _make_run(self, group: str, run_id: str, settings: dict[str, Any], analyses: tuple,
                  evaluate: tuple[str, ...]) -> RunSpec:
        where = f"groups.{group}.runs.{run_id}"
        check_keys(settings, RUN_KEYS, f"{where} (or its group/defaults)")
        model_name = settings.pop("model", None)
        if model_name not in self.models:
            raise ConfigError(f"{where}.model={model_name!r} is not defined under models")
        labels = settings.pop("labels", {}) or {}
        lr, lr_sweep = self._lr(settings.pop("lr", None), where)
        tokens = settings.pop("tokens", None)
        if tokens is not None:
            if "steps" in settings:
                raise ConfigError(f"{where}: give either tokens or steps, not both")
            B, T = settings.get("global_batch", 256), settings.get("seq_len", 1024)
            settings["steps"] = max(1, round(float(tokens) / (B * T)))
        try:
            train = TrainConfig(lr=lr, **settings)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        model = self.models[model_name].replace(name=model_name)
        return RunSpec(run_id, group, model, train, lr_sweep, labels, analyses, evaluate)

    def _lr(self, value: Any, where: str) -> tuple[float, str | None]:
        if value is None:
            raise ConfigError(f"{where}: no lr (set lr: <number or name under lr>)")
        if isinstance(value, str):
            if value not in self.lrs:
                raise ConfigError(f"{where}.lr={value!r} is not defined under lr")
            value = self.lrs[value]
        if isinstance(value, dict):
            entry = from_mapping(LrSweep, value, f"{where}.lr")
            return entry.default, entry.sweep
        return float(value), None

    def _register(self, run: RunSpec) -> None:
        if run.run_id in self.runs or run.run_id in self.aliases:
            raise ConfigError(f"run id {run.run_id!r} is defined twice")
        for other in self.runs.values():
            if other.sweep_of is None and other.training_key == run.training_key:
                self.aliases[run.run_id] = other.run_id
                self._alias_specs[run.run_id] = run
                return
        self.runs[run.run_id] = run

    def _add_sweep(self, name: str, spec: dict[str, Any]) -> None:
        where = f"sweeps.{name}"
        sweep = from_mapping(SweepEntry, spec, where)
        if sweep.run not in self.runs and sweep.run not in self.aliases:
            raise ConfigError(f"{where}.run={sweep.run!r} is not a run of any group")
        base = self.spec(sweep.run)
        fraction, grid = sweep.budget_fraction, sweep.grid
        steps = max(1, round(base.train.steps * fraction))
        # keep the base warmup unless it would eat most of the shortened schedule
        warmup = base.train.warmup_steps if base.train.warmup_steps <= steps // 2 else max(1, steps // 10)
        points = []
        for lr in grid:
            run_id = f"{base.run_id}@lr{lr_tag(lr)}"
            train = dataclasses.replace(base.train, lr=lr, steps=steps, stop_after=None, warmup_steps=warmup)
            point = dataclasses.replace(base, run_id=run_id, train=train, lr_sweep=None, sweep_of=name,
                                        analyses=(), evaluate=())
            self.runs[run_id] = point
            points.append(run_id)
        self.sweeps[name] = Sweep(name, base.run_id, grid, fraction, tuple(points))

    # --- lookups ------------------------------------------------------------------------------
    def canonical(self, run_id: str) -> str:
        """The run id whose training job produces `run_id`'s weights."""
        if run_id in self.runs:
            return run_id
        if run_id in self.aliases:
            return self.aliases[run_id]
        raise UnknownRunError(self.unknown_run(run_id))

    def unknown_run(self, run_id: str) -> str:
        """The one-line error for a run id the config does not define: the closest ids and the config's runs."""
        import difflib

        close = difflib.get_close_matches(run_id, [*self.runs, *self.aliases], n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return (f"unknown run {run_id!r}: the workflow config defines no such run ({hint}its runs: "
                f"{', '.join(self.all_ids())}; seeds are <run>~s<k>, LR-sweep points <run>@lr<value>)")

    def spec(self, run_id: str) -> RunSpec:
        """The spec as defined (aliases keep their own group and labels)."""
        if run_id in self._alias_specs:
            return self._alias_specs[run_id]
        return self.runs[self.canonical(run_id)]

    def trained_together(self, run_id: str) -> list[str]:
        """The canonical run of `run_id` followed by its aliases (the ids that share one training)."""
        canonical = self.canonical(run_id)
        return [canonical] + [a for a, c in self.aliases.items() if c == canonical]

    def analyses(self, run_id: str) -> list[str]:
        """Metric families computed on a trained run: the union over the run and its aliases, in config order."""
        return list(dict.fromkeys(m for i in self.trained_together(run_id) for m in self.spec(i).analyses))

    def evaluation_tasks(self, run_id: str) -> list[str]:
        """M12 tasks scored on a trained run: the union over the run and its aliases, in `evaluation.tasks` order."""
        wanted = {t for i in self.trained_together(run_id) for t in self.spec(i).evaluate}
        return [t for t in self._all_tasks() if t in wanted]

    def replicas(self, run_id: str) -> list[str]:
        """The seeds of a paper run: `run_id` (seed 0) followed by `run_id~s1`, ... (also given a replica's id)."""
        base = self.spec(run_id).replica_of or run_id
        return list(self._replicas[base])

    def group_ids(self, group: str) -> list[str]:
        """Every run id of `group` with its replicate seeds (`depth-L16`, `depth-L16~s1`, ...), in config order."""
        return [r for base in self.group_runs[group] for r in self._replicas[base]]

    def _all_tasks(self) -> tuple[str, ...]:
        return tuple((self.config.get("evaluation") or {}).get("tasks") or ())

    def all_ids(self, seeds: bool = False) -> list[str]:
        """Every paper run id (aliases included), in group order; sweep points excluded; with `seeds`, each
        followed by its replicate seeds."""
        return [r for g in GROUPS for r in (self.group_ids(g) if seeds else self.group_runs[g])]

    def trained_ids(self) -> list[str]:
        """Ids of the training jobs: canonical runs and sweep points."""
        return list(self.runs)

    def run_dir(self, run_id: str) -> Path:
        return self.results / "runs" / self.canonical(run_id)

    def sweep_file(self, sweep: str) -> Path:
        return self.results / "sweeps" / f"{sweep}.json"

    def data_dir(self) -> Path:
        return self.results / "data" / str(self.config["data"].get("id", "default"))

    def run_config(self, run_id: str) -> RunConfig:
        """The RunConfig `sparsecod train` runs.

        The model's vocabulary is the tokenizer's (from the shards' meta.json); a swept LR is read from
        results/sweeps/<sweep>.json.
        """
        run = self.runs[self.canonical(run_id)]
        meta_file = self.data_dir() / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file} is missing: tokenize the corpus first (`snakemake {meta_file}`)")
        model = run.model.replace(vocab_size=int(json.loads(meta_file.read_text())["vocab_size"]))
        train = run.train
        if run.lr_sweep is not None:
            path = self.sweep_file(run.lr_sweep)
            if not path.is_file():
                raise FileNotFoundError(f"run {run.run_id} takes its LR from sweep {run.lr_sweep}: {path} is missing "
                                        f"(run `snakemake {path}` first)")
            train = dataclasses.replace(train, lr=float(json.loads(path.read_text())["best_lr"]))
        aliases = sorted(self.trained_together(run.run_id)[1:])
        meta = {"group": run.group, "labels": run.labels, "aliases": aliases, "lr_sweep": run.lr_sweep,
                "sweep_of": run.sweep_of, "scale": self.config.get("scale"),
                "peak_flops": Resources.from_config(self.config).gpu_peak_flops}  # MFU in the logs
        return RunConfig(run_id=run.run_id, model=model, train=train, data=str(self.data_dir()), meta=meta)

    def write_run_config(self, run_id: str, out: Path, log: Path | None = None) -> RunConfig:
        """Save `run_config(run_id)` as `out` (run.yaml) and a one-line digest to `log`."""
        cfg = self.run_config(run_id)
        cfg.save(out)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"run {cfg.run_id}: lr={cfg.train.lr} steps={cfg.train.steps} vocab={cfg.model.vocab_size}\n")
        return cfg


class UnknownRunError(ConfigError, KeyError):
    """A run id that the workflow config does not define (a ConfigError: the CLI prints it as one line)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"config key {key!r} is missing or not a mapping")
    return value


def _seed_count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}={value!r}: give the number of replicate seeds, an integer >= 1 (1 = no replicas)")
    return value


def _model(name: str, d: Any) -> ModelConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"models.{name} must be a mapping of model config keys")
    try:
        return ModelConfig.from_dict(d)
    except ConfigError as err:
        raise ConfigError(f"models.{name}: {err}") from None
    except TypeError as err:
        raise ConfigError(f"models.{name}: {err}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"workflow config {path} does not exist")
    return yaml.safe_load(path.read_text())


def load_registry(path: str | Path) -> Registry:
    return Registry(load_config(path))


PAPER_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"  # the checkout's paper-scale config


@functools.cache
def paper_registry() -> Registry:
    """The Registry of config/config.yaml: where the paper's model shapes are defined (sparsecod.model.presets)."""
    if not PAPER_CONFIG.is_file():
        raise ConfigError(f"the paper config {PAPER_CONFIG} is missing (sparsecod reads it from its checkout); "
                          "give a workflow config instead, e.g. --config config/config.yaml")
    return load_registry(PAPER_CONFIG)


# The workflow's validated config as JSON, set by workflow/rules/common.smk for the verbs its rules call
# (run-config, select-lr, collect): they see the same registry as the Snakefile, --configfile/--config included.
WORKFLOW_CONFIG_ENV = "SPARSECOD_WORKFLOW_CONFIG"


def workflow_registry(path: str | Path | None = None) -> Registry:
    """The Registry of the workflow config file `path`, else of $SPARSECOD_WORKFLOW_CONFIG; ConfigError if neither."""
    import os

    if path is not None:
        return load_registry(path)
    text = os.environ.get(WORKFLOW_CONFIG_ENV)
    if not text:
        raise ConfigError(f"no workflow config: give --workflow-config config/config.yaml (under Snakemake the "
                          f"workflow passes its own in ${WORKFLOW_CONFIG_ENV})")
    return Registry(json.loads(text))
