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


COMMANDS = [_params]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparsecod", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
