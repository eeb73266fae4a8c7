"""Time limits (issue 16): the FLOPs formula shared by the runtime estimate and the MFU, and the paper DAG's train
jobs within resources.max_runtime with the warning signal and requeue."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparsecod.model.config import ModelConfig
from sparsecod.model.flops import attention_flops_per_token, flops_per_token, mfu, recompute_factor

ROOT = Path(__file__).resolve().parents[1]


def test_flops_per_token_is_6n_active_plus_attention():
    m = ModelConfig(n_layers=16, d_model=2048, n_heads=16, n_kv_heads=16, d_ff=8192)
    n_active = m.param_counts()["active"]
    assert attention_flops_per_token(m, 4096) == 12 * 16 * 2048 * 4096
    assert flops_per_token(m, 4096) == 6 * n_active + 12 * 16 * 2048 * 4096
    assert 0.20 < attention_flops_per_token(m, 4096) / (6 * n_active) < 0.26  # +23 % at T=4096 (issue 16)
    assert mfu(1000.0, m, 4096, peak_flops=flops_per_token(m, 4096) * 1000.0 / 0.5, devices=1) == pytest.approx(0.5)
    assert recompute_factor(True) == pytest.approx(8 / 6) and recompute_factor(False) == 1


@pytest.mark.integration
def test_paper_dag_train_jobs_fit_the_time_limit_and_requeue():
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-n", "all", "--profile", "slurm"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    blocks = re.findall(r"^rule train:\n(.*?)(?=^\S|\Z)", out.stdout + out.stderr, flags=re.M | re.S)
    assert len(blocks) > 50
    runtimes = []
    for block in blocks:
        res = re.search(r"resources: (.*)", block).group(1)
        runtimes.append(int(re.search(r"runtime=(\d+)", res).group(1)))
        assert "slurm_extra=--signal=URG@300 --requeue" in res, res
    assert max(runtimes) == 1440  # the longest runs are capped at resources.max_runtime and requeue themselves
