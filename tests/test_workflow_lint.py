"""Issue 17.7: the workflow follows the snakemake-workflows catalog's checks — `snakefmt --check` (settings in
pyproject.toml [tool.snakefmt]) and `snakemake --lint` with the paper and the smoke config report nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from test_workflow import ROOT, snakemake


def test_snakefmt_check_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, ("run `snakefmt Snakefile workflow` (snakefmt is in the test extra)\n"
                                    + result.stdout + result.stderr)


@pytest.mark.parametrize("configfile", [None, "config/smoke.yaml"], ids=["paper", "smoke"])
def test_snakemake_lint_is_clean(configfile: str | None) -> None:
    result = snakemake("--lint", *(["--configfile", configfile] if configfile else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
