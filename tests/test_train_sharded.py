"""Sharded training (`train.strategy: fsdp2`, train/parallel.py) on CPU with gloo, 2 processes (issue 16.2).

- the loss curve (and every logged statistic) equals one process with the same global batch within 1e-5 (fp32),
  and the consolidated `model/` (read by sparsecod.load_model) equals the unsharded result: dense and MoE;
- a run SIGKILLed after a sharded checkpoint and rerun equals an uninterrupted sharded run bit for bit (MoE,
  bf16-mixed: the MixedPrecisionPolicy path with the fp32 router unit);
- the checkpoint on disk is sharded (torch.distributed.checkpoint shards of both ranks behind the last.ckpt symlink);
- Slurm requeue: SIGURG -> a sharded hpc_ckpt_1.ckpt and `scontrol requeue`; the rerun resumes bit for bit;
- under bf16-mixed the blocks compute with bf16 weights, the router and the root in fp32, gradients are fp32.
"""

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

import numpy as np
import pandas as pd
import pytest
import torch

import sparsecod
from _train_testutil import one_thread, shard, tiny_run  # noqa: F401  (fixtures)
from sparsecod.model.config import ConfigError
from sparsecod.train import read_log, train_run

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]
LOGS = ("train_log", "variance_log", "kurtosis_log", "val_log")


def _cli(config: Path, out: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", **(extra_env or {}))
    cmd = [sys.executable, "-m", "sparsecod.cli", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    return err


def _sharded(run, **train):
    return dataclasses.replace(run, train=dataclasses.replace(run.train, devices=2, strategy="fsdp2", **train))


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return sparsecod.load_model(run_dir / "model").state_dict()


@pytest.mark.parametrize("family", ["dense", "moe"])
def test_two_sharded_processes_match_one_process(tmp_path, shard, family):  # noqa: F811
    one = tiny_run(shard, family, steps=6, micro_batch=2, ckpt_every=4, kurtosis_every=2, val_tokens=64)
    two = _sharded(one)
    two.save(tmp_path / "two.yaml")
    proc = _cli(tmp_path / "two.yaml", tmp_path / "two")
    train_run(one, tmp_path / "one")
    _finish(proc)

    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["config"]["train"]["strategy"] == "fsdp2"
    for name in LOGS:
        a, b = read_log(tmp_path / "one", name), read_log(tmp_path / "two", name)
        cols = [c for c in a.columns if c != "train_seconds"]
        assert len(a) == len(b) > 0, name
        np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=0, atol=1e-5, err_msg=name)
    sa, sb = _state(tmp_path / "one"), _state(tmp_path / "two")  # consolidated model/ vs the unsharded run
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k].shape == sa[k].shape and sb[k].dtype == torch.float32, k
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=1e-5, msg=k)
    # the periodic checkpoint at step 4 and the final one are sharded: both ranks' DCP shards behind the symlink
    last = tmp_path / "two" / "checkpoints" / "last.ckpt"
    assert last.is_symlink() and (last / "meta.pt").is_file() and (last / ".metadata").is_file()
    assert len(list(last.glob("*.distcp"))) == 2
    assert torch.load(last / "meta.pt", weights_only=False)["global_step"] == 6
    # a checkpoint resumes only under the layout that wrote it (Lightning loads nothing else)
    with pytest.raises(ConfigError, match=r"sharded by train\.strategy=fsdp2.*set train\.strategy: fsdp2"):
        train_run(one, tmp_path / "two")
    with pytest.raises(ConfigError, match=r"as one file .*set train\.strategy: ddp"):
        train_run(two, tmp_path / "one")


def test_sharded_kill_and_resume_equals_uninterrupted(tmp_path, shard):  # noqa: F811
    run = _sharded(tiny_run(shard, "moe", steps=20, micro_batch=2, ckpt_every=4, kurtosis_every=5, var_every=2,
                            val_every=10, val_tokens=64, precision="bf16-mixed"))
    run.save(tmp_path / "run.yaml")
    full = _cli(tmp_path / "run.yaml", tmp_path / "full")  # the uninterrupted reference, alongside
    killed = _cli(tmp_path / "run.yaml", tmp_path / "k")
    last = tmp_path / "k" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not (last / "meta.pt").is_file() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)  # both ranks, mid-run
    killed.communicate()
    assert not (tmp_path / "k" / "summary.json").exists(), "the run ended before it could be killed"

    _finish(full)
    err = _finish(_cli(tmp_path / "run.yaml", tmp_path / "k"))
    resumed = re.search(r"resuming from \S*last\.ckpt \(step (\d+)\)", err)
    assert resumed and 0 < int(resumed.group(1)) < 20, err[-3000:]

    sa, sb = _state(tmp_path / "full"), _state(tmp_path / "k")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for name in LOGS:
        da, db = pd.read_parquet(tmp_path / "full" / f"{name}.parquet"), pd.read_parquet(tmp_path / "k" / f"{name}.parquet")
        cols = [c for c in da.columns if c != "train_seconds"]
        pd.testing.assert_frame_equal(da[cols], db[cols], check_exact=True, obj=name)
    # one checkpoint directory is left: the one last.ckpt points to (the killed write's leftovers are gone)
    shards = sorted(f".shards/{p.name}" for p in (tmp_path / "k" / "checkpoints" / ".shards").iterdir())
    assert shards == [os.readlink(tmp_path / "k" / "checkpoints" / "last.ckpt")]


def test_bf16_mixed_sharding_computes_in_bf16_and_keeps_fp32_gradients(tmp_path):
    """One gloo process: block matmul weights are bf16 in the forward, the router's and the LM head's fp32; the
    sharded parameters and their gradients (reduced in fp32) stay fp32 DTensors."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    from _train_testutil import MODELS
    from sparsecod.model import Transformer
    from sparsecod.train.parallel import mixed_precision_policy, shard_model

    policy = mixed_precision_policy("bf16-mixed")
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert not policy.cast_forward_inputs and mixed_precision_policy("32-true") is None
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = Transformer(MODELS["moe"])
        shard_model(model, init_device_mesh("cpu", (1,)), "bf16-mixed")
        seen = {}
        block = model.blocks[0]
        for name, mod in {"qkv": block.attn.qkv, "router": block.ffn.router, "head": model.lm_head}.items():
            mod.register_forward_pre_hook(lambda m, _args, n=name: seen.update({n: m.weight.dtype}) and None)
        idx = torch.randint(0, 96, (2, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(idx, idx, return_logits=False)
        out.loss.backward()
        assert seen == {"qkv": torch.bfloat16, "router": torch.float32, "head": torch.float32}
        for name, p in model.named_parameters():
            assert isinstance(p, DTensor) and p.dtype == torch.float32 and p.grad.dtype == torch.float32, name
    finally:
        dist.destroy_process_group()


def test_sharded_slurm_requeue_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, shard):  # noqa: F811
    """Under Slurm (fake job, `scontrol` stubbed) SIGURG makes Lightning save hpc_ckpt_1.ckpt through the sharded
    writer (a symlink to DCP shards) and requeue; after a SIGKILL the rerun resumes from it, removes it at the end
    and ends with the weights and logs of an uninterrupted run. One device: a multi-device job started from one Slurm
    task has no requeue handler and resumes from last.ckpt (the kill-and-resume test above)."""
    run = tiny_run(shard, "gqa", steps=120, ckpt_every=10, var_every=5, val_tokens=64, strategy="fsdp2")
    run.save(tmp_path / "run.yaml")
    stub_bin, calls = tmp_path / "stub_bin", tmp_path / "scontrol_calls.txt"
    stub_bin.mkdir()
    (stub_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (stub_bin / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "4243", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "train",
             "PATH": f"{stub_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = _cli(tmp_path / "run.yaml", tmp_path / "k", extra_env=slurm)
    full = _cli(tmp_path / "run.yaml", tmp_path / "full")
    ckpts = tmp_path / "k" / "checkpoints"

    def wait_for(path: Path) -> None:
        deadline = time.time() + 200
        while not path.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)

    wait_for(ckpts / "last.ckpt" / "meta.pt")
    proc.send_signal(signal.SIGURG)
    wait_for(calls)  # written after hpc_ckpt_1.ckpt
    proc.kill()
    _, err = proc.communicate()
    hpc = ckpts / "hpc_ckpt_1.ckpt"
    assert hpc.is_symlink() and (hpc / "meta.pt").is_file(), err[-3000:]
    assert calls.read_text() == "requeue 4243\n" and not (tmp_path / "k" / "summary.json").exists()
    err = _finish(_cli(tmp_path / "run.yaml", tmp_path / "k", extra_env=slurm))
    _finish(full)
    resumed = re.search(r"resuming from \S*(?:hpc_ckpt_1|last)\.ckpt \(step (\d+)\)", err)
    assert resumed and 0 < int(resumed.group(1)) < 120, err[-3000:]
    assert not hpc.exists() and not hpc.is_symlink() and (ckpts / "last.ckpt").is_symlink()
    assert [f".shards/{p.name}" for p in (ckpts / ".shards").iterdir()] == [os.readlink(ckpts / "last.ckpt")]
    sa, sb = _state(tmp_path / "full"), _state(tmp_path / "k")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for name in LOGS:
        da, db = pd.read_parquet(tmp_path / "full" / f"{name}.parquet"), pd.read_parquet(tmp_path / "k" / f"{name}.parquet")
        cols = [c for c in da.columns if c != "train_seconds"]
        pd.testing.assert_frame_equal(da[cols], db[cols], check_exact=True, obj=name)
