"""`sparsecod <command>`: the entry point every Snakemake rule calls.

Each command is a small function that adds its sub-parser; the work is imported lazily so that
`sparsecod --help` stays fast (importing torch costs seconds).
"""

from __future__ import annotations

import argparse
import sys


def _params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="parameter counts of every run's model (built on the meta device)",
                       description="The models of a workflow config's runs, read through the registry the workflow "
                                   "builds (models: and each run's model:).")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.add_argument("--config", default=None, help="workflow config (default: the paper config, config/config.yaml)")
    p.add_argument("presets", nargs="*", help="run ids or names under models: (default: every run)")

    def run(args: argparse.Namespace) -> int:
        from .experiments import load_registry
        from .model.params import params_table

        registry = load_registry(args.config) if args.config else None
        print(params_table(args.presets or None, fmt=args.format, registry=registry))
        return 0

    p.set_defaults(func=run)


def _plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="peak memory per GPU of every training job of a workflow config (issue 16)",
                       description="Parameters, gradients and AdamW states under each run's strategy plus activations "
                                   "(sparsecod.train.memory_plan), against resources.gpu_mem_gb.")
    p.add_argument("--config", default="config/config.yaml", help="workflow config (default: the paper config)")
    p.add_argument("--format", choices=["table", "csv"], default="table")

    def run(args: argparse.Namespace) -> int:
        from .config.workflow import Resources
        from .experiments import load_config, Registry
        from .train.memory_plan import plan_registry, plan_table

        config = load_config(args.config)
        cap = float(Resources.from_config(config).gpu_mem_gb)
        print(plan_table(plan_registry(Registry(config)), cap, fmt=args.format))
        return 0

    p.set_defaults(func=run)


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run (resumes from <out>/checkpoints/ if a checkpoint is there)")
    p.add_argument("--config", required=True, help="run.yaml (sparsecod.config.RunConfig)")
    p.add_argument("--out", required=True, help="run directory, e.g. results/runs/<run_id>")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress output (default: a bar on a terminal, else a plain line every few steps)")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="peak FLOP/s of one device, for the logged MFU (default: meta.peak_flops of run.yaml, from "
                        "resources.gpu_peak_flops)")

    def run(args: argparse.Namespace) -> int:
        from .train import train_run

        train_run(args.config, args.out, progress_bar=not args.no_progress, peak_flops=args.peak_flops)
        return 0

    p.set_defaults(func=run)


def _tokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="tokenize data.corpus into train/heldout token shards (protocol §1.1, §1.6)",
                       description="Writes <out>/{train,heldout}.bin, tokenizer.json and meta.json; a complete "
                                   "directory built from the same settings is left untouched.")
    p.add_argument("--config", help="YAML file with a top-level `data:` section (keys: see sparsecod.data.config)")
    p.add_argument("--data-json", help="the `data:` section as a JSON mapping (instead of --config)")
    p.add_argument("--out", required=True, help="shard directory to write")
    p.add_argument("--corpus", help="override data.corpus: fineweb-edu | builtin | path/dir/glob of local files")
    p.add_argument("--text-field", help="override data.text_field")
    p.add_argument("--tokenizer", help="override data.tokenizer: tokenizer.json path | Hub id | bpe:<vocab_size>")
    p.add_argument("--train-tokens", help="override data.train_tokens (e.g. 2e6)")
    p.add_argument("--heldout-tokens", help="override data.heldout_tokens")
    p.add_argument("--heldout-fraction", type=float, help="override data.heldout_fraction")
    p.add_argument("--workers", type=int, help="override data.workers (tokenizer processes)")
    p.add_argument("--max-chars", help="override data.max_chars (corpus character cap)")
    p.add_argument("--bpe-chars", help="override data.bpe_chars")
    p.add_argument("--cache-dir", help="cache for trained bpe:<V> tokenizers (default $SPARSECOD_CACHE or "
                                       "~/.cache/sparsecod)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        import yaml

        from .data.config import DataConfig
        from .data.shards import build_shards
        from .config.errors import ConfigError

        section: dict = {}
        if args.config and args.data_json:
            raise ConfigError("give either --config or --data-json, not both")
        if args.config:
            doc = yaml.safe_load(Path(args.config).read_text())
            if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
                raise ConfigError(f"{args.config} has no top-level `data:` mapping")
            section = dict(doc["data"])
        if args.data_json:
            section = _json_mapping(args.data_json, "--data-json")
        for key in ("corpus", "text_field", "tokenizer", "train_tokens", "heldout_tokens", "heldout_fraction",
                    "workers", "max_chars", "bpe_chars"):
            if getattr(args, key) is not None:
                section[key] = getattr(args, key)
        result = build_shards(DataConfig.from_dict(section), args.out, cache_dir=args.cache_dir,
                              progress=not args.no_progress)
        print(result.summary())
        return 0

    p.set_defaults(func=run)


def _analyze(sub: argparse._SubParsersAction) -> None:
    from .metrics.registry import describe  # names only, no torch

    p = sub.add_parser("analyze", help="layer metrics M3-M11 of a trained run -> <run_dir>/analysis/<metric>.*",
                       description=f"Metrics: {describe()} (protocol §2). Several (comma list) or `all` share one "
                                   "process. "
                                   "A transformers LlamaForCausalLM directory is imported into <out>/model, its "
                                   "held-out text tokenized with its tokenizer.json into <out>/heldout (from the "
                                   "--config `data:` section unless --heldout is given), results in <out>/analysis.")
    p.add_argument("run_dir", help="run directory holding model/ (and run.yaml), e.g. results/runs/<run_id>, or a "
                                   "transformers LlamaForCausalLM checkpoint directory (needs --out)")
    p.add_argument("--out", help="results directory for a checkpoint directory (model/, heldout/, analysis/)")
    p.add_argument("--figures", action="store_true", help="checkpoint directory only: also draw <out>/figures/"
                                                          "layers.{pdf,png} (variance, Jacobian, M4-M6 per layer)")
    p.add_argument("--metric", required=True, help="metric name, comma list, or `all` (the config's analyses for "
                                                  "this run's group, or every metric without a workflow config)")
    p.add_argument("--heldout", help="token shard directory with heldout.bin (default: `data` of run.yaml)")
    p.add_argument("--config", help="workflow config (its `analysis:` section) or a flat analysis-settings YAML")
    p.add_argument("--settings-json", help="analysis settings as a JSON mapping (applied on top of --config)")
    p.add_argument("--suite-out", help="also write this JSON listing the metrics computed and their files")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (parity with the released code; default fp32)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")

    def run(args: argparse.Namespace) -> int:
        from .fileio import write_json_atomic
        from .metrics.runner import analyze
        from .metrics.settings import AnalysisSettings, read_settings_file
        from .config.errors import ConfigError
        from .model.hf_llama import is_llama_dir

        mapping, workflow = read_settings_file(args.config) if args.config else ({}, None)
        if args.settings_json:
            mapping.update(_json_mapping(args.settings_json, "--settings-json"))
        run_dir, heldout = args.run_dir, args.heldout
        if is_llama_dir(args.run_dir):  # an external checkpoint (issue 19): import, tokenize its held-out text
            from .external import context_length, prepare

            run_dir, heldout = prepare(args.run_dir, args.out, heldout, (workflow or {}).get("data"),
                                       progress=not args.no_progress)
            if mapping.get("ppl_seq_len") is None and context_length(run_dir):
                mapping["ppl_seq_len"] = context_length(run_dir)
            mapping["init_control"] = False  # its step-0 weights (and seed) are unknown: no untrained control
        elif args.out or args.figures:
            raise ConfigError(f"--out and --figures are only for a transformers checkpoint; {args.run_dir} writes its "
                              "own analysis/ and gets its figures from the workflow")
        settings = AnalysisSettings.from_mapping(mapping)
        files = analyze(run_dir, args.metric, heldout, settings, workflow, bf16=args.bf16,
                        device=args.device, progress=not args.no_progress)
        metrics = list(files)
        if args.figures:
            from .plots.figures import external_figure

            files["figures"] = external_figure(run_dir)
        if args.suite_out:
            write_json_atomic(args.suite_out, {"run_dir": str(run_dir), "metrics": metrics,
                                    "files": {m: [p.name for p in paths] for m, paths in files.items()}})
        return 0

    p.set_defaults(func=run)


def _evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="zero-shot downstream accuracy with the stock lm-eval tasks (protocol M12)",
                       description="Writes <run_dir>/eval/lm_eval.json (harness results), eval/downstream.csv "
                                   "(task, metric, value×100, stderr, n) and, with --log-samples, eval/samples/.")
    p.add_argument("run_dir", help="run directory holding model/ (or a model directory)")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="lm-eval task/group names, comma- or space-separated (default: mmlu arc_easy arc_challenge "
                        "hellaswag)")
    p.add_argument("--limit", type=float, default=None,
                   help="documents per stock task (per MMLU subject); default all")
    p.add_argument("--eval-data", default=None,
                   help="local evaluation data directory (config evaluation.data_dir; default $SPARSECOD_EVAL_DATA, "
                        "else the stock Hub datasets): ai2_arc/, hellaswag/, hails/mmlu_no_train/ as HF "
                        "save_to_disk shards")
    p.add_argument("--task-dir", default=None,
                   help="folder of the embedded task pydoc_cont4 (its YAML and test.jsonl; `sparsecod eval-set`)")
    p.add_argument("--embedded-limit", type=int, default=None,
                   help="items of pydoc_cont4 scored (config evaluation.embedded_limit; default all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--log-samples", action="store_true", help="also write per-document records to eval/samples/")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 | auto")
    p.add_argument("--max-length", type=int, default=None, help="context window (default: the run's training T)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(args: argparse.Namespace) -> int:
        from .evaluation.downstream import evaluate_run

        limit = None if args.limit is None else int(args.limit) if args.limit >= 1 else args.limit
        table = evaluate_run(args.run_dir, args.tasks, limit=limit, data_dir=args.eval_data,
                             batch_size=args.batch_size, log_samples=args.log_samples, device=args.device,
                             dtype=args.dtype, max_length=args.max_length, progress=not args.no_progress,
                             task_dir=args.task_dir, embedded_limit=args.embedded_limit)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        return 0

    p.set_defaults(func=run)


def _eval_set(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-set", help="build the embedded multiple-choice task pydoc_cont4 from held-out documents "
                                        "(protocol M12)",
                       description="Writes <out>/test.jsonl, meta.json and pydoc_cont4.yaml (an lm-eval task: "
                                   "`sparsecod evaluate RUN --tasks pydoc_cont4 --task-dir OUT`).")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--heldout-fraction", type=float, default=None,
                   help="data.heldout_fraction of the runs to evaluate (default: DataConfig's)")
    p.add_argument("--seed", type=int, default=None, help="item seed (default: the task's)")
    p.add_argument("--items", type=int, default=None, help="number of items (default: the task's)")
    p.add_argument("--workers", type=int, default=1, help="processes parsing the standard library")

    def run(args: argparse.Namespace) -> int:
        import dataclasses
        import json

        from .data.config import DataConfig
        from .evaluation.embedded import EvalSetSpec, build_eval_set

        fraction = DataConfig().heldout_fraction if args.heldout_fraction is None else args.heldout_fraction
        changes = {k: v for k, v in (("seed", args.seed), ("items", args.items)) if v is not None}
        spec = dataclasses.replace(EvalSetSpec(heldout_fraction=fraction), **changes)
        meta = build_eval_set(args.out, spec, workers=args.workers)
        print(json.dumps({k: v for k, v in meta.items() if k != "source"}))
        return 0

    p.set_defaults(func=run)


def _export_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-hf", help="write a model as a stock transformers directory "
                                         "(dense: LlamaForCausalLM, MoE: Qwen2MoeForCausalLM)")
    p.add_argument("source", help="run directory holding model/, or a model directory")
    p.add_argument("out_dir", help="directory to write (replaced)")
    p.add_argument("--max-positions", type=int, default=None,
                   help="max_position_embeddings (default: the run's training T, else 2048)")
    p.add_argument("--verify", action="store_true",
                   help="load the export with transformers.AutoModelForCausalLM and fail unless its fp32 logits "
                        "match ours to 1e-4 (needs transformers, the test extra)")

    def run(args: argparse.Namespace) -> int:
        from .evaluation.export_hf import export_hf, verify_export

        out = export_hf(args.source, args.out_dir, max_positions=args.max_positions)
        if args.verify:
            print(f"max |logit difference| vs transformers: {verify_export(args.source, out):.3g}")
        print(out)
        return 0

    p.set_defaults(func=run)


def _render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="figures (fig1..fig29), tables (table1..table8) and the claims verdict (protocol §4, "
                                     "§5); beyond the paper: figX1, tableX1, claimsX (group lns)",
                       description="Reads the tidy summaries and the per-run files of --results; writes "
                                   "<results>/figures/<stem>.{pdf,png}, <results>/tables/<stem>.{csv,md,tex} and "
                                   "<results>/claims.{md,csv}.")
    p.add_argument("names", nargs="+",
                   help="fig1 … fig29, table1 … table8, claims; figX1, tableX1, claimsX (beyond the paper)")
    p.add_argument("--results", required=True, help="results directory (holds runs/)")
    p.add_argument("--summary", nargs="+", required=True, help="summary parquet file(s) of the groups needed")
    p.add_argument("--reference", required=True, help="directory of the paper's numbers (config/reference)")

    def run(args: argparse.Namespace) -> int:
        from .plots.render import render_items

        for path in render_items(args.names, args.results, args.summary, args.reference):
            print(path)
        return 0

    p.set_defaults(func=run)


def _workflow_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow-config", help="workflow config YAML (config/config.yaml, smoke.yaml, ...); default: "
                                             "the one Snakemake passes in $SPARSECOD_WORKFLOW_CONFIG")


def _run_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run-config", help="write the run.yaml `sparsecod train` reads for one run of the registry",
                       description="Model and training settings from the workflow config, the vocabulary from the "
                                   "shards' meta.json, a swept LR from results/sweeps/<sweep>.json (protocol §3, Q1).")
    p.add_argument("run", help="run id, e.g. depth-L16 (an alias resolves to the run it trains as)")
    p.add_argument("--out", required=True, help="run.yaml to write")
    p.add_argument("--log", help="file for a one-line digest (lr, steps, vocab)")
    _workflow_config_option(p)

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .experiments import workflow_registry

        reg = workflow_registry(args.workflow_config)
        reg.write_run_config(args.run, Path(args.out), Path(args.log) if args.log else None)
        return 0

    p.set_defaults(func=run)


def _select_lr(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select-lr", help="pick an LR sweep's winner: lowest held-out loss (protocol Q1)")
    p.add_argument("sweep", help="sweep name (config key sweeps.<name>)")
    p.add_argument("summaries", nargs="+", help="summary.json of every grid point, in the sweep's grid order")
    p.add_argument("--out", required=True, help="results/sweeps/<sweep>.json to write")
    p.add_argument("--log", help="file for a one-line verdict")
    _workflow_config_option(p)

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .experiments import workflow_registry
        from .sweeps import select_best

        sweeps = workflow_registry(args.workflow_config).sweeps
        if args.sweep not in sweeps:
            raise ValueError(f"unknown sweep {args.sweep!r}; the config's sweeps: {', '.join(sweeps)}")
        sweep = sweeps[args.sweep]
        if len(args.summaries) != len(sweep.grid):
            raise ValueError(f"sweep {sweep.name} has {len(sweep.grid)} grid points, got {len(args.summaries)} "
                             "summary files")
        select_best(sweep, [Path(p) for p in args.summaries], Path(args.out), Path(args.log) if args.log else None)
        return 0

    p.set_defaults(func=run)


def _collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="the tidy summary table of the registry's runs (results/summary/<group>.parquet)")
    p.add_argument("--group", action="append", help="experiment group(s) to collect (repeatable; default: all)")
    p.add_argument("--out", required=True, help="parquet file to write")
    p.add_argument("--log", help="file for a line per run")
    _workflow_config_option(p)

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .collect import collect
        from .experiments import workflow_registry

        reg = workflow_registry(args.workflow_config)
        unknown = sorted(set(args.group or []) - set(reg.group_runs))
        if unknown:
            raise ValueError(f"--group {', '.join(unknown)}: unknown; the groups are {', '.join(reg.group_runs)}")
        collect(reg, Path(args.out), Path(args.log) if args.log else None, groups=args.group)
        return 0

    p.set_defaults(func=run)


def _merge_summaries(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-summaries", help="concatenate group summary tables into results/summary.parquet")
    p.add_argument("summaries", nargs="+", help="results/summary/<group>.parquet files")
    p.add_argument("--out", required=True, help="parquet file to write")
    p.add_argument("--log", help="file for a one-line row count")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from .collect import merge_summaries

        merge_summaries([Path(p) for p in args.summaries], Path(args.out), Path(args.log) if args.log else None)
        return 0

    p.set_defaults(func=run)


def _schema(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="the workflow config's JSON schema, generated from the key definitions",
                       description="sparsecod schema > workflow/schemas/config.schema.yaml regenerates the schema "
                                   "Snakemake validates every config against (sparsecod.config.schema).")

    def run(args: argparse.Namespace) -> int:
        from .config.schema import schema_yaml

        sys.stdout.write(schema_yaml())
        return 0

    p.set_defaults(func=run)


COMMANDS = [_params, _plan, _schema, _train, _tokenize, _analyze, _evaluate, _eval_set, _export_hf, _render,
            _run_config, _select_lr, _collect, _merge_summaries]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecod", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _json_mapping(text: str, option: str) -> dict:
    """Parse a JSON object given on the command line; ConfigError naming `option` otherwise."""
    import json

    from .config.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{option} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON mapping, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input (config values, missing files, offline hub access, unsupported models) ends
    with one line `sparsecod <command>: error: ...` and exit code 2 instead of a traceback."""
    import logging

    from .config.errors import ConfigError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ConnectionError, ValueError) as err:
        # ConnectionError covers data.network.OfflineError; ValueError covers ExportError and bad metric names
        print(f"sparsecod {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
