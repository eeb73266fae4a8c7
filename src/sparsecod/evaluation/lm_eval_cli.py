"""The stock lm-eval CLI with the `sparsecod` model registered (the stock `lm_eval` cannot import it itself).

    python -m sparsecod.evaluation.lm_eval_cli --model sparsecod \
        --model_args checkpoint=results/runs/<run>/model --batch_size 32 --tasks arc_easy,hellaswag

takes every option of `lm_eval` (run / ls / validate subcommands). For local data use `--include_path`
with group YAMLs like those `sparsecod evaluate --eval-data DIR` generates (sparsecod.evaluation.tasks).
"""

from __future__ import annotations

from . import adapter  # noqa: F401  (registers the `sparsecod` model)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
