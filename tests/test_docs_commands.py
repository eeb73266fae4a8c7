"""Every `snakemake …` command written in the README, the docs and the config headers parses as intended.

Snakemake's `--configfile` takes several files, so `snakemake -c2 --configfile config/mini.yaml all` reads `all` as a
second config file and fails; users copy these lines verbatim, so each one is parsed with Snakemake's own parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from snakemake.cli import get_argument_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "config").glob("*.yaml"))]


def documented_commands() -> list[tuple[str, str]]:
    """(document name, command) for every `snakemake` invocation in a code line, a `# Run:` line or inline code."""
    commands = []
    for document in DOCUMENTS:
        for line in document.read_text().splitlines():
            for match in re.finditer(r"(?:^|`|#\s*Run:\s*)(snakemake\s[^`#|]*)", line.strip()):
                commands.append((document.name, match.group(1).strip()))
    return commands


COMMANDS = documented_commands()


def test_the_docs_hold_snakemake_commands() -> None:
    assert len(COMMANDS) >= 8, COMMANDS


@pytest.mark.parametrize(("document", "command"), COMMANDS, ids=[f"{d}:{c}" for d, c in COMMANDS])
def test_documented_snakemake_command_parses(document: str, command: str) -> None:
    args = get_argument_parser().parse_args(shlex.split(command)[1:])
    for configfile in args.configfile or []:
        assert (ROOT / configfile).is_file(), f"{document}: `{command}` reads {configfile!s} as a config file"
    for profile in args.profile or []:
        if not profile.startswith("~"):  # a user's own profile (docs/slurm.md) is not part of the repository
            assert (ROOT / profile).is_dir(), f"{document}: `{command}` names a missing profile {profile}"
