"""End-to-end training (`sparsecod train`): outputs, optimisation math, logs, resume, divergence, DDP."""

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

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

import sparsecod
from _train_testutil import one_thread, shard, tiny_run  # noqa: F401  (fixtures)
from sparsecod.cli import main as cli_main
from sparsecod.model import Transformer
from sparsecod.model.config import ConfigError
from sparsecod.train import read_log, train_run
from sparsecod.data.shards import open_tokens
from sparsecod.train.data import StepSchedule, TokenWindows
from sparsecod.train.optim import lr_factor, param_groups
from sparsecod.train.checkpoint_io import checkpoint_step
from sparsecod.train.run import DivergenceWarning

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]
DETERMINISTIC = ["step", "loss", "ce", "aux", "lr", "grad_norm", "tokens"]


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return sparsecod.load_model(run_dir / "model").state_dict()


def _assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        if atol == 0:
            assert torch.equal(sa[k], sb[k]), k
        else:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=atol, msg=k)


def _logs_equal(a: Path, b: Path) -> None:
    for name in ("train_log", "variance_log", "kurtosis_log", "val_log"):
        da, db = pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet")
        cols = [c for c in da.columns if c != "train_seconds"]
        pd.testing.assert_frame_equal(da[cols], db[cols], check_exact=True, obj=name)


@pytest.mark.parametrize("family", ["dense", "gqa", "moe"])
def test_cli_trains_each_family(tmp_path, shard, family):  # noqa: F811
    run = tiny_run(shard, family, run_id=f"tiny-{family}", steps=8, var_every=3, kurtosis_every=4,
                   val_tokens=160, precision="bf16-mixed")
    run.save(tmp_path / "run.yaml")
    out = tmp_path / "runs" / run.run_id
    assert cli_main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(out), "--no-progress"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == run.run_id and summary["status"] == "completed" and not summary["diverged"]
    assert summary["steps_done"] == 8 and summary["tokens"] == 8 * 8 * 16
    assert summary["params"] == run.model.param_counts() and summary["precision"] == "bf16-mixed"
    assert summary["tokens_per_s"] > 0 and summary["wall_time_s"] > 0
    train = read_log(out, "train_log")
    assert train["step"].tolist() == list(range(8))
    assert summary["final_train_loss"] == pytest.approx(train["loss"].iloc[-1])
    assert train["loss"].iloc[-1] < train["loss"].iloc[0]  # the shard's "+1" pattern is learnable
    assert (train["aux"] > 0).all() if family == "moe" else (train["aux"] == 0).all()
    var = read_log(out, "variance_log")
    assert sorted(set(var["step"])) == [0, 3, 6] and len(var) == 3 * 2  # capture only on var_every steps
    assert sorted(set(read_log(out, "kurtosis_log")["step"])) == [0, 4]
    val = read_log(out, "val_log")
    assert val["step"].tolist() == [8] and summary["final_val_loss"] == pytest.approx(val["val_loss"].iloc[0])
    assert val["val_targets"].iloc[0] == 10 * 15

    model = sparsecod.load_model(out / "model")
    assert model.cfg == run.model and (out / "model" / "tokenizer.json").is_file()
    assert json.loads((out / "model" / "config.json").read_text())["steps_done"] == 8


@pytest.mark.parametrize("family", ["gqa", "moe"])
def test_one_step_equals_plain_adamw_on_the_global_batch(tmp_path, shard, family):  # noqa: F811
    """Micro-batches of 2 with accumulation 4 == one clipped AdamW step on the global batch of 8 (protocol §1.5).

    Dense: the loss of the whole batch at once. MoE: CE of the whole batch plus the aux loss averaged
    over the micro-batches (protocol §1.3 [CHOICE], D10), since the load-balancing term is not additive.
    """
    run = tiny_run(shard, family, steps=8, stop_after=1, micro_batch=2, warmup_steps=0, lr=1e-2, var_every=0)
    summary = train_run(run, tmp_path / "r")
    assert summary["steps_done"] == 1

    torch.manual_seed(run.train.seed)
    model = Transformer(run.model)
    win = TokenWindows(open_tokens(shard, "train"), 16)
    idx = win.windows(StepSchedule(len(win), 8, run.train.seed).global_ids(0))
    if family == "moe":
        outs = [model(*TokenWindows.inputs_targets(mb)) for mb in idx.view(4, 2, 16)]
        loss = sum(o.loss for o in outs) / 4
        ce, aux = sum(o.ce_loss.item() for o in outs) / 4, sum(o.aux_loss.item() for o in outs) / 4
    else:
        out = model(*TokenWindows.inputs_targets(idx))
        loss, ce, aux = out.loss, out.ce_loss.item(), 0.0
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, 0.1)]
    lr = 1e-2 * lr_factor(1, run.train)
    torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8).step()

    row = read_log(tmp_path / "r", "train_log").iloc[0]
    assert row["ce"] == pytest.approx(ce, abs=1e-6) and row["aux"] == pytest.approx(aux, abs=1e-7)
    assert row["grad_norm"] == pytest.approx(norm.item(), rel=1e-4) and row["lr"] == pytest.approx(lr)
    got = _state(tmp_path / "r")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=2e-6, msg=k)


def test_micro_batch_size_does_not_change_training(tmp_path, shard):  # noqa: F811
    big = train_run(tiny_run(shard, "dense", steps=4, micro_batch=8, kurtosis_every=2), tmp_path / "a")
    small = train_run(tiny_run(shard, "dense", steps=4, micro_batch=1, kurtosis_every=2), tmp_path / "b")
    assert small["final_train_loss"] == pytest.approx(big["final_train_loss"], abs=1e-6)
    _assert_same_weights(tmp_path / "a", tmp_path / "b", atol=1e-6)
    for name in ("train_log", "variance_log", "kurtosis_log"):
        a, b = read_log(tmp_path / "a", name), read_log(tmp_path / "b", name)
        cols = [c for c in a.columns if c != "train_seconds"]
        np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_loader_workers_and_compile_do_not_change_training(tmp_path, shard):  # noqa: F811
    """train.loader_workers: the same batches, bit for bit; train.compile: true (blocks and loss) within 1e-5."""
    plain = tiny_run(shard, "dense", steps=4, kurtosis_every=2)
    train_run(plain, tmp_path / "plain")
    workers = dataclasses.replace(plain, train=dataclasses.replace(plain.train, loader_workers=2))
    train_run(workers, tmp_path / "workers")
    _assert_same_weights(tmp_path / "plain", tmp_path / "workers")
    _logs_equal(tmp_path / "plain", tmp_path / "workers")
    compiled = dataclasses.replace(plain, train=dataclasses.replace(plain.train, compile=True))
    seen = []

    class _SeeCompiled(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen.append(all(getattr(b, "_sparsecod_compiled", False) for b in pl_module.model.blocks))

    train_run(compiled, tmp_path / "compiled", callbacks=[_SeeCompiled()])
    assert seen == [True]
    a, b = read_log(tmp_path / "plain", "train_log"), read_log(tmp_path / "compiled", "train_log")
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=0, atol=1e-5)
    _assert_same_weights(tmp_path / "plain", tmp_path / "compiled", atol=1e-5)


def test_variance_log_equals_numpy_on_the_initial_model(tmp_path, shard):  # noqa: F811
    """Step-0 rows (pre-update weights, protocol M1) recomputed with NumPy from the seeded initial model."""
    run = tiny_run(shard, "gqa", steps=2, micro_batch=2)
    train_run(run, tmp_path / "r")
    var = read_log(tmp_path / "r", "variance_log")
    torch.manual_seed(run.train.seed)
    model = Transformer(run.model)
    win = TokenWindows(open_tokens(shard, "train"), 16)
    idx = win.windows(StepSchedule(len(win), 8, run.train.seed).global_ids(0))
    traces = model(idx, capture=True).ctx.traces

    def np_var(h):
        x = h.detach().double().numpy().reshape(-1, h.shape[-1])
        return np.mean(x.var(axis=1, ddof=1))

    step0 = var[var["step"] == 0].set_index("layer")
    for l, t in enumerate(traces):
        assert step0.loc[l, "out_var"] == pytest.approx(np_var(t.output), rel=1e-5)
        assert step0.loc[l, "attn_out_var"] == pytest.approx(np_var(t.attn_out), rel=1e-5)
        assert step0.loc[l, "ffn_out_var"] == pytest.approx(np_var(t.ffn_out), rel=1e-5)
    x = traces[-1].output.detach().double()
    normed = x / torch.sqrt(x.square().mean(-1, keepdim=True) + run.model.norm_eps)  # gains are 1 at init
    assert step0["var_pre"].iloc[0] == pytest.approx(np_var(traces[-1].output), rel=1e-5)
    assert step0["var_post"].iloc[0] == pytest.approx(np_var(normed), rel=1e-5)


class _Crash(L.Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


def test_crash_and_resume_equals_uninterrupted(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "moe", steps=8, ckpt_every=3, kurtosis_every=2, val_every=2, val_tokens=64,
                   precision="bf16-mixed")
    train_run(run, tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(run, tmp_path / "res", callbacks=[_Crash(at=5)])  # after the checkpoint at step 3
    assert (tmp_path / "res" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "res" / "summary.json").exists()
    parts_dir = tmp_path / "res" / "log_parts" / "train_log"
    before = set(parts_dir.glob("part-*.parquet"))
    summary = train_run(run, tmp_path / "res")
    assert summary["steps_done"] == 8
    _assert_same_weights(tmp_path / "full", tmp_path / "res")
    _logs_equal(tmp_path / "full", tmp_path / "res")
    # it really resumed: the rows written after the crash start at the checkpoint (step 3), not at 0
    after = sorted(set(parts_dir.glob("part-*.parquet")) - before)
    assert min(pd.read_parquet(p)["step"].min() for p in after) == 3
    assert max(pd.read_parquet(p)["step"].max() for p in before) == 4  # steps 3-4 were redone

    # a finished run reruns without training and rewrites the same outputs
    again = train_run(run, tmp_path / "res")
    assert again["steps_done"] == 8 and again["final_val_loss"] == summary["final_val_loss"]
    _assert_same_weights(tmp_path / "full", tmp_path / "res")


def test_stop_after_then_extend_equals_uninterrupted(tmp_path, shard):  # noqa: F811
    """E7-style early stop; raising stop_after later continues from the final checkpoint."""
    full = tiny_run(shard, "dense", steps=8)
    train_run(full, tmp_path / "full")
    early = dataclasses.replace(full, train=dataclasses.replace(full.train, stop_after=5))
    assert train_run(early, tmp_path / "ext")["steps_done"] == 5
    assert train_run(full, tmp_path / "ext")["steps_done"] == 8
    _assert_same_weights(tmp_path / "full", tmp_path / "ext")
    _logs_equal(tmp_path / "full", tmp_path / "ext")


def test_resume_with_a_different_recipe_is_refused(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "dense", steps=3)
    train_run(run, tmp_path / "r")
    changed = dataclasses.replace(run, train=dataclasses.replace(run.train, lr=1e-2))
    with pytest.raises(ConfigError, match=r"train\.lr.*delete"):
        train_run(changed, tmp_path / "r")


def test_periodic_and_final_validation_equal_a_direct_computation(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "gqa", steps=7, val_every=3, val_tokens=100, var_every=0)
    summary = train_run(run, tmp_path / "r")
    val = read_log(tmp_path / "r", "val_log")
    assert val["step"].tolist() == [3, 6, 7]
    model = sparsecod.load_model(tmp_path / "r" / "model")
    win = TokenWindows(open_tokens(shard, "heldout"), 16)
    inputs, targets = TokenWindows.inputs_targets(win.windows(np.arange(100 // 16)))
    with torch.no_grad():
        ref = model(inputs, targets).ce_loss.item()
    assert summary["final_val_loss"] == pytest.approx(ref, rel=1e-5)


def test_divergence_stops_cleanly_and_keeps_outputs(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "dense", steps=8, lr=1e6, warmup_steps=0, val_tokens=64)
    run.save(tmp_path / "run.yaml")
    with pytest.warns(DivergenceWarning, match="diverged at step"):
        code = cli_main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["diverged"] and summary["status"] == "diverged"
    s = summary["diverged_step"]
    assert 0 < s < 8 and summary["steps_done"] == s and summary["diverged_reason"]
    train = read_log(tmp_path / "r", "train_log")
    assert train["step"].tolist() == list(range(s + 1))  # the diverged step is logged too
    assert len(read_log(tmp_path / "r", "variance_log")) == (s + 1) * 2
    model = sparsecod.load_model(tmp_path / "r" / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert summary["final_val_loss"] is None or np.isfinite(summary["final_val_loss"])


def test_loss_above_max_loss_is_divergence_before_any_update(tmp_path, shard):  # noqa: F811
    run = tiny_run(shard, "moe", steps=8, max_loss=1.0)  # ln(96) ≈ 4.6 at init
    with pytest.warns(DivergenceWarning):
        summary = train_run(run, tmp_path / "r")
    assert summary["diverged_step"] == 0 and summary["steps_done"] == 0 and summary["final_train_loss"] is None
    assert summary["diverged_loss"] == pytest.approx(read_log(tmp_path / "r", "train_log")["loss"].iloc[0])
    torch.manual_seed(run.train.seed)
    init = Transformer(run.model).state_dict()
    got = _state(tmp_path / "r")
    assert all(torch.equal(got[k], v) for k, v in init.items())  # last finite weights = the initial ones


def _cli(config: Path, out: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", **(extra_env or {}))
    cmd = [sys.executable, "-m", "sparsecod.cli", "train", "--config", str(config), "--out", str(out), "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ddp_two_processes_match_one_process(tmp_path, shard):  # noqa: F811
    single = tiny_run(shard, "moe", steps=6, micro_batch=2, ckpt_every=4, kurtosis_every=2, val_tokens=64)
    ddp = dataclasses.replace(single, train=dataclasses.replace(single.train, devices=2, strategy="ddp"))
    ddp.save(tmp_path / "ddp.yaml")
    proc = _cli(tmp_path / "ddp.yaml", tmp_path / "ddp")
    train_run(single, tmp_path / "one")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    for name in ("train_log", "variance_log", "kurtosis_log", "val_log"):
        a, b = read_log(tmp_path / "one", name), read_log(tmp_path / "ddp", name)
        cols = [c for c in a.columns if c != "train_seconds"]
        assert len(a) == len(b) > 0, name
        np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    _assert_same_weights(tmp_path / "one", tmp_path / "ddp", atol=1e-4)


def test_requeue_signal_waits_for_the_update_with_other_threads_alive():
    """SIGURG (Lightning's requeue signal here) sent during the optimizer update is handled after it, also when
    another thread could take the signal (torch's worker threads; a signal mask of the main thread is not enough)."""
    import threading

    from sparsecod.train.module import REQUEUE_SIGNAL, _signals_deferred

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    seen: list[str] = []
    old = signal.signal(REQUEUE_SIGNAL, lambda *_: seen.append("handled"))
    try:
        with _signals_deferred():
            os.kill(os.getpid(), REQUEUE_SIGNAL)
            for _ in range(10_000):  # bytecode boundaries where Python would run a pending handler
                pass
            seen.append("update done")
        assert seen == ["update done", "handled"]
    finally:
        signal.signal(REQUEUE_SIGNAL, old)
        stop.set()
        other.join()


def test_slurm_requeue_then_sigkill_and_rerun_equals_uninterrupted(tmp_path, shard):  # noqa: F811
    """Lightning's SLURM handler saves hpc_ckpt_1.ckpt on SIGURG (mid-step) and requeues the job; after a SIGKILL
    the rerun resumes from that checkpoint and ends with the weights and logs of an uninterrupted run.

    The job id is fake, so `scontrol` is a stub on PATH that records its arguments: the handler can never requeue a
    real job of a Slurm cluster running on this machine.
    """
    from sparsecod.train.module import _DEFERRED, REQUEUE_SIGNAL

    assert REQUEUE_SIGNAL == signal.SIGURG and REQUEUE_SIGNAL in _DEFERRED  # held during the optimizer update
    run = tiny_run(shard, "gqa", steps=150, ckpt_every=10, precision="bf16-mixed", var_every=5, val_tokens=64)
    run.save(tmp_path / "run.yaml")
    stub_bin, calls = tmp_path / "stub_bin", tmp_path / "scontrol_calls.txt"
    stub_bin.mkdir()
    (stub_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (stub_bin / "scontrol").chmod(0o755)
    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "localhost",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "train",
             "PATH": f"{stub_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = _cli(tmp_path / "run.yaml", tmp_path / "k", extra_env=slurm)
    ckpts = tmp_path / "k" / "checkpoints"

    def wait_for(path: Path) -> None:
        deadline = time.time() + 120
        while not path.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)

    wait_for(ckpts / "last.ckpt")
    proc.send_signal(signal.SIGURG)
    wait_for(calls)  # written after hpc_ckpt_1.ckpt
    proc.kill()
    _, err = proc.communicate()
    assert (ckpts / "hpc_ckpt_1.ckpt").exists() and not (tmp_path / "k" / "summary.json").exists(), err[-3000:]
    assert calls.read_text() == "requeue 4242\n"
    # The restarted job runs under Slurm too: its final validate() must not reload hpc_ckpt_1 (Lightning's auto-resume).
    rerun = _cli(tmp_path / "run.yaml", tmp_path / "k", extra_env=slurm)
    train_run(run, tmp_path / "full")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    resumed = re.search(r"resuming from \S*(?:hpc_ckpt_1|last)\.ckpt \(step (\d+)\)", err)
    assert resumed and 0 < int(resumed.group(1)) < 150, err[-3000:]
    assert not (ckpts / "hpc_ckpt_1.ckpt").exists() and (ckpts / "last.ckpt").exists()
    _assert_same_weights(tmp_path / "full", tmp_path / "k")
    _logs_equal(tmp_path / "full", tmp_path / "k")


_SIGURG_IN_UPDATE = """
import os, signal, sys
from lightning.pytorch.callbacks import Callback
from sparsecod.train import train_run

class SignalInUpdate(Callback):  # SIGURG from inside the optimizer step of step AT: the deferred-signal window
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(sys.argv[3]):
            def send(*args):
                handle.remove()
                os.kill(os.getpid(), signal.SIGURG)

            handle = pl_module.optimizers().optimizer.register_step_pre_hook(send)

train_run(sys.argv[1], sys.argv[2], progress_bar=False, callbacks=[SignalInUpdate()])
"""


def test_requeue_signal_during_the_update_keeps_that_steps_log_row(tmp_path, shard):  # noqa: F811
    """SIGURG arriving during the optimizer update is held until the update ends, so the requeue checkpoint is
    at step AT + 1; the row of step AT must already be on disk then, or the resumed run (from AT + 1) never logs it.
    The stub `scontrol` SIGKILLs its caller, the training process, right after the checkpoint and the requeue."""
    at = 14
    run = tiny_run(shard, "dense", steps=30, ckpt_every=10, var_every=5)
    run.save(tmp_path / "run.yaml")
    stub_bin, calls = tmp_path / "stub_bin", tmp_path / "scontrol_calls.txt"
    stub_bin.mkdir()
    (stub_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nkill -9 $PPID\n')
    (stub_bin / "scontrol").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1", SLURM_JOB_ID="4243",
               SLURM_NODELIST="localhost", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0",
               SLURM_JOB_NAME="train", PATH=f"{stub_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    killed = subprocess.run([sys.executable, "-c", _SIGURG_IN_UPDATE, str(tmp_path / "run.yaml"), str(tmp_path / "k"),
                             str(at)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL and calls.read_text() == "requeue 4243\n", killed.stderr[-3000:]
    ckpts = tmp_path / "k" / "checkpoints"
    assert checkpoint_step(ckpts / "hpc_ckpt_1.ckpt") == at + 1, killed.stderr[-3000:]  # handled after the update
    rerun = _cli(tmp_path / "run.yaml", tmp_path / "k", extra_env={k: env[k] for k in env if k.startswith("SLURM_")})
    train_run(run, tmp_path / "full")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert f"(step {at + 1})" in err, err[-3000:]
    _assert_same_weights(tmp_path / "full", tmp_path / "k")
    _logs_equal(tmp_path / "full", tmp_path / "k")


def test_slurm_plugins_use_sigurg_or_launch_devices_from_one_task(monkeypatch):
    """Under Slurm: SIGURG requeue handling; one task asking for several GPUs gets Lightning's own launcher."""
    import signal

    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from sparsecod.train.run import _cluster_plugins

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert _cluster_plugins(signal.SIGURG, devices=4) == []
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    (env,) = _cluster_plugins(signal.SIGURG, devices=1)
    assert isinstance(env, SLURMEnvironment) and env.requeue_signal == signal.SIGURG
    (env,) = _cluster_plugins(signal.SIGURG, devices=4)
    assert isinstance(env, LightningEnvironment) and not isinstance(env, SLURMEnvironment)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # srun started one task per GPU: Slurm manages the processes
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    assert isinstance(_cluster_plugins(signal.SIGURG, devices=4)[0], SLURMEnvironment)
