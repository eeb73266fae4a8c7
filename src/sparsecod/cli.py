"""`sparsecod <command>`: the entry point every Snakemake rule calls.

Each command is a small function that adds its sub-parser; the work is imported lazily so that
`sparsecod --help` stays fast (importing torch costs seconds).
"""

from __future__ import annotations

import argparse
import sys


def _params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="parameter counts of every paper model preset (built on the meta device)")
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.add_argument("presets", nargs="*", help="preset names (default: all)")

    def run(args: argparse.Namespace) -> int:
        from .model.params import params_table

        print(params_table(args.presets or None, fmt=args.format))
        return 0

    p.set_defaults(func=run)


def _train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run (resumes from <out>/checkpoints/ if a checkpoint is there)")
    p.add_argument("--config", required=True, help="run.yaml (sparsecod.config.RunConfig)")
    p.add_argument("--out", required=True, help="run directory, e.g. results/runs/<run_id>")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(args: argparse.Namespace) -> int:
        from .train import train_run

        train_run(args.config, args.out, progress_bar=not args.no_progress)
        return 0

    p.set_defaults(func=run)


def _tokenize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="tokenize data.corpus into train/heldout token shards (spec §1.1, §1.6)",
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
        from .model.config import ConfigError

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
    p = sub.add_parser("analyze", help="layer metrics M3-M11 of a trained run -> <run_dir>/analysis/<metric>.*",
                       description="Metrics: jacobian, causal, permutation, usefulness, weight_sparsity, attention, "
                                   "kurtosis, perplexity (spec §2). Several (comma list) or `all` share one process. "
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
        from .model.config import ConfigError
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
    p = sub.add_parser("evaluate", help="zero-shot downstream accuracy with the stock lm-eval tasks (spec M12)",
                       description="Writes <run_dir>/eval/lm_eval.json (harness results), eval/downstream.csv "
                                   "(task, metric, value×100, stderr, n) and, with --log-samples, eval/samples/.")
    p.add_argument("run_dir", help="run directory holding model/ (or a model directory)")
    p.add_argument("--tasks", nargs="+", default=None,
                   help="lm-eval task/group names, comma- or space-separated (default: mmlu arc_easy arc_challenge "
                        "hellaswag)")
    p.add_argument("--limit", type=float, default=None, help="documents per task (per MMLU subject); default all")
    p.add_argument("--eval-data", default=None,
                   help="local evaluation data directory (config evaluation.data_dir; default $SPARSECOD_EVAL_DATA, "
                        "else the stock Hub datasets): ai2_arc/, hellaswag/, hails/mmlu_no_train/ as HF "
                        "save_to_disk shards")
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
                             dtype=args.dtype, max_length=args.max_length, progress=not args.no_progress)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        return 0

    p.set_defaults(func=run)


def _export_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-hf", help="write a dense model as a Hugging Face LlamaForCausalLM directory")
    p.add_argument("source", help="run directory holding model/, or a model directory")
    p.add_argument("out_dir", help="directory to write (replaced)")
    p.add_argument("--max-positions", type=int, default=None,
                   help="max_position_embeddings (default: the run's training T, else 2048)")

    def run(args: argparse.Namespace) -> int:
        from .evaluation.export_hf import export_hf

        print(export_hf(args.source, args.out_dir, max_positions=args.max_positions))
        return 0

    p.set_defaults(func=run)


def _render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="figures (fig1..fig29), tables (table1..table8) and the claims verdict (spec §4, "
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


COMMANDS = [_params, _train, _tokenize, _analyze, _evaluate, _export_hf, _render]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecod", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _json_mapping(text: str, option: str) -> dict:
    """Parse a JSON object given on the command line; ConfigError naming `option` otherwise."""
    import json

    from .model.config import ConfigError

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

    from .model.config import ConfigError

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
