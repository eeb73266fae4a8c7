"""Slurm's warning signal with several training processes (issue 16): every rank checkpoints at the same step,
rank 0 requeues the job once, and the requeued job resumes from that checkpoint and finishes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _train_testutil import shard, tiny_run  # noqa: F401  (fixtures)


def _cli(config: Path, out: Path, env_extra: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", **env_extra)
    cmd = [sys.executable, "-m", "sparsecod.cli", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.integration
def test_two_process_requeue_checkpoints_in_step_and_resumes(tmp_path, shard):  # noqa: F811
    """One Slurm task, devices=2 (Lightning launches rank 1): SIGURG to rank 0 only still makes both ranks save
    hpc_ckpt_1.ckpt at one step (an all-reduce of the request), `scontrol requeue 4242` runs once, and the rerun
    resumes from it. `scontrol` is a stub on PATH, so no real job of a cluster on this machine is touched."""
    run = tiny_run(shard, "dense", steps=120, micro_batch=2, ckpt_every=10)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, devices=2, strategy="ddp"))
    run.save(tmp_path / "run.yaml")
    stub_bin, calls = tmp_path / "stub_bin", tmp_path / "scontrol_calls.txt"
    stub_bin.mkdir()
    (stub_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (stub_bin / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "train",
             "PATH": f"{stub_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = tmp_path / "r"
    proc = _cli(tmp_path / "run.yaml", out, slurm)
    ckpts = out / "checkpoints"

    def wait_for(path: Path) -> None:
        deadline = time.time() + 240
        while not path.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)

    wait_for(ckpts / "last.ckpt")
    proc.send_signal(signal.SIGURG)  # rank 0 only
    wait_for(calls)
    os.killpg(proc.pid, signal.SIGKILL)  # what the requeue does to the job
    _, err = proc.communicate()
    assert calls.read_text() == "requeue 4242\n", err[-3000:]
    assert (ckpts / "hpc_ckpt_1.ckpt").exists() and not (out / "summary.json").exists()
    rerun = _cli(tmp_path / "run.yaml", out, slurm)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    resumed = re.search(r"resuming from \S*(?:hpc_ckpt_1|last)\.ckpt \(step (\d+)\)", err)
    assert resumed and 0 < int(resumed.group(1)) < 120, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 120 and summary["world_size"] == 2
    assert not (ckpts / "hpc_ckpt_1.ckpt").exists()
