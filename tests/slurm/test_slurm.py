"""Slurm for real (issue 8): a live single-node cluster, the Snakemake Slurm executor plugin with the repository's
`slurm` profile plus the CI overlay, the sbatch flags the plugin derives from rule resources, requeue, and the
project's own workflow: one smoke-scale run trained and analysed as Slurm jobs, then preempted and resumed.

The cluster tests share one session cluster (`slurm_cluster`), one Snakemake run of the throwaway workflow
tests/slurm/data/Snakefile (`tiny_run`) and one smoke run of the real Snakefile (`smoke_run`). The first tests
below check the skip/fail policy without a cluster.
"""

import json
import math
import os
import re
import time
from pathlib import Path

import pytest
import torch
import yaml

from sparsecod.metrics.registry import INIT_DIR, INIT_METRICS, control_name
from sparsecod.metrics.settings import AnalysisSettings
from _slurm_testutil import (
    HERE,
    OVERLAY,
    REPO,
    cluster_unavailable_reason,
    sbatch_call,
    skip_or_fail,
    submitted_jobs,
)

# --- policy and profiles (no cluster) -----------------------------------------------------------------------


def test_skip_outside_ci_fail_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no root"):
        skip_or_fail("no root")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true.*no root"):
        skip_or_fail("no root")


def test_non_root_is_a_reason(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "root" in cluster_unavailable_reason()


def test_profiles_are_where_snakemake_looks(monkeypatch):
    """`--profile slurm` / `--profile local` from the repo root resolve to <root>/<name>/config.yaml."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(REPO)
    for name in ("slurm", "local"):
        _, config_file = get_profile_dir(name)
        assert config_file.resolve() == REPO / name / "config.yaml"
    local = yaml.safe_load((REPO / "local" / "config.yaml").read_text())
    assert local["configfile"] == "config/smoke.yaml" and local["cores"] == "all"
    overlay = yaml.safe_load((OVERLAY / "config.yaml").read_text())
    assert overlay["slurm-status-command"] == "squeue"
    # The plugin falls back to sacct (which hangs without slurmdbd) unless MinJobAge >= 3 x init seconds.
    conf = (HERE / "start_cluster.sh").read_text()
    min_job_age = int(re.search(r"^MinJobAge=(\d+)$", conf, re.M).group(1))
    assert min_job_age >= max(3 * overlay["slurm-init-seconds-before-status-checks"], 180)


def test_slurm_profile_takes_partition_and_account_from_env(monkeypatch):
    from snakemake.profiles import ProfileConfigFileParser

    def default_resources():
        with (REPO / "slurm" / "config.yaml").open() as f:
            parsed = ProfileConfigFileParser().parse(f)
        assert parsed["executor"] == "slurm"
        return parsed["default-resources"]

    for var in ("SPARSECOD_SLURM_PARTITION", "SBATCH_PARTITION", "SPARSECOD_SLURM_ACCOUNT", "SBATCH_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    unset = default_resources()  # unset: left to the plugin (default partition, guessed account)
    assert not any(r.startswith(("slurm_partition=", "slurm_account=")) for r in unset)
    assert "cpus_per_task=threads" in unset
    monkeypatch.setenv("SBATCH_PARTITION", "p_sbatch")
    monkeypatch.setenv("SPARSECOD_SLURM_ACCOUNT", "acct1")
    assert {"slurm_partition=p_sbatch", "slurm_account=acct1"} <= set(default_resources())
    monkeypatch.setenv("SPARSECOD_SLURM_PARTITION", "p_own")
    assert "slurm_partition=p_own" in default_resources()


# --- live cluster --------------------------------------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.integration
def test_sbatch_wrap_runs_and_reports_job_id(slurm_cluster, tmp_path):
    out = tmp_path / "hello.out"
    job_id = slurm_cluster.sbatch("--output", str(out), "--wrap", "echo hello from job $SLURM_JOB_ID")
    info = slurm_cluster.wait_state(job_id, {"COMPLETED"}, timeout=30)
    assert info["JobId"] == job_id and info["Partition"] == slurm_cluster.partition
    assert out.read_text().strip() == f"hello from job {job_id}"


@pytest.fixture(scope="module")
def tiny_run(slurm_cluster, tmp_path_factory):
    """One run of tests/slurm/data/Snakefile through the plugin: (workdir, output log)."""
    workdir = tmp_path_factory.mktemp("tiny_slurm_workflow")
    rc, log = slurm_cluster.snakemake(workdir, "--verbose", snakefile=HERE / "data" / "Snakefile", timeout=180)
    assert rc == 0, f"snakemake --profile slurm failed (exit {rc}):\n{log[-6000:]}"
    return workdir, log


def _output_job(workdir: Path, rule: str) -> tuple[str, str]:
    """(Slurm job id, CUDA_VISIBLE_DEVICES or 'none') that the rule wrote into out/<rule>.txt."""
    lines = (workdir / "out" / f"{rule}.txt").read_text().split("\n")
    return lines[0], (lines[1] if len(lines) > 1 else "")


@pytest.mark.slurm
@pytest.mark.integration
def test_workflow_outputs_hold_real_job_ids(slurm_cluster, tiny_run):
    workdir, log = tiny_run
    submitted = submitted_jobs(log)
    ids = {}
    for rule in ("train", "gpu_probe", "gather"):
        job_id, _ = _output_job(workdir, rule)
        assert job_id.isdigit(), f"out/{rule}.txt does not start with a Slurm job id: {job_id!r}"
        info = slurm_cluster.job(job_id)
        assert info["JobState"] == "COMPLETED"
        assert info["Comment"] == f"rule_{rule}"  # the plugin tags each job with its rule
        assert submitted[job_id] == rule
        ids[rule] = info
    assert len({i["JobId"] for i in ids.values()}) == 3
    assert len({i["JobName"] for i in ids.values()}) == 1  # one run uuid for all jobs of the run
    # gather ran after both of its inputs' jobs had finished
    assert ids["gather"]["StartTime"] >= max(ids["train"]["EndTime"], ids["gpu_probe"]["EndTime"])


@pytest.mark.slurm
@pytest.mark.integration
def test_gpu_memory_time_cpus_reach_sbatch(slurm_cluster, tiny_run):
    """gpu_probe (gpu=1, mem_mb=321, runtime=7): --gpus=1 and the rest, as submitted and as Slurm recorded it."""
    workdir, log = tiny_run
    call = sbatch_call(log, "gpu_probe")
    for flag in ("--gpus=1", "--cpus-per-task=1"):
        assert flag in call, f"{flag} missing from {' '.join(call)}"
    for opt, value in (("--mem", "321"), ("-t", "7"), ("-p", slurm_cluster.partition), ("-A", "sparsecod-ci")):
        assert call[call.index(opt) + 1] == value, f"{opt} {value} missing from {' '.join(call)}"
    assert "--ntasks=1" not in call  # the plugin leaves --ntasks out for GPU jobs

    job_id, cuda = _output_job(workdir, "gpu_probe")
    info = slurm_cluster.job(job_id)
    assert info["TresPerJob"] == "gres:gpu:1"
    assert info["MinMemoryNode"] == "321M" and info["TimeLimit"] == "00:07:00" and info["NumCPUs"] == "1"
    assert info["Account"] == "sparsecod-ci"
    assert cuda == "0"  # the fake GPU was really allocated to the job step


@pytest.mark.slurm
@pytest.mark.integration
def test_ci_overlay_removes_gpu_requests(slurm_cluster, tiny_run):
    """Rule `train` asks for gpu=1; the overlay's set-resources turns it into a CPU job."""
    workdir, log = tiny_run
    call = sbatch_call(log, "train")
    assert not any(a.startswith(("--gpus", "--gres")) for a in call), " ".join(call)
    assert "--ntasks=1" in call
    job_id, cuda = _output_job(workdir, "train")
    assert "gpu" not in slurm_cluster.job(job_id).get("TresPerJob", "")
    assert cuda == "none"


@pytest.mark.slurm
@pytest.mark.integration
def test_requeued_job_runs_again(slurm_cluster, tmp_path):
    """Preemption groundwork: a --requeue job killed by `scontrol requeue` starts again with the same id."""
    trace = tmp_path / "runs.txt"
    script = f'echo "run ${{SLURM_RESTART_COUNT:-0}} $SLURM_JOB_ID" >> {trace}; sleep 120'
    job_id = slurm_cluster.sbatch("--requeue", "--output", str(tmp_path / "job.out"), "--wrap", script)
    try:
        _wait_lines(trace, 1, timeout=30)
        slurm_cluster.requeue(job_id)
        _wait_lines(trace, 2, timeout=60)
        assert trace.read_text().split("\n")[:2] == [f"run 0 {job_id}", f"run 1 {job_id}"]
        info = slurm_cluster.wait_state(job_id, {"RUNNING"}, timeout=10)
        assert info["Restarts"] == "1" and info["Requeue"] == "1"
    finally:
        slurm_cluster.cancel(job_id)


def _wait_lines(path: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= n):
        if time.monotonic() > deadline:
            got = path.read_text() if path.exists() else "(no file)"
            pytest.fail(f"{path} has not reached {n} line(s) after {timeout}s: {got!r}")
        time.sleep(0.2)


# --- the project's workflow on the cluster -------------------------------------------------------------------
# One run of config/smoke.yaml in a temporary working directory (the repository's results/ and .snakemake/ are
# never touched): tokenize, run_config (local rule), train and the run's analysis suite, each Slurm job submitted
# by the plugin with the project's profile plus the CI overlay. The preemption test then trains the same run again
# and preempts it; the first training is its uninterrupted reference.

SMOKE_RUN = "wd-0.1"  # 32 steps, analysis suite of 5 metrics; its LR comes from a sweep, which the config below fixes


def _smoke_config(workdir: Path) -> Path:
    """config/smoke.yaml with absolute paths, the run's LR fixed (no proxy sweep) and a checkpoint every 8 steps."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    eval_dir = (REPO / cfg["evaluation"]["data_dir"]).resolve() if cfg["evaluation"].get("data_dir") else None
    cfg["evaluation"]["data_dir"] = str(eval_dir) if eval_dir and eval_dir.is_dir() else None  # relative to the root
    cfg["lr"]["fixed"] = cfg["lr"]["fixed"]["default"]
    cfg["defaults"]["ckpt_every"] = 8  # does not change the weights (resume-safe key), gives the preemption a marker
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def smoke_run(slurm_cluster, tmp_path_factory):
    """(workdir, snakemake output) of `results/runs/wd-0.1/{summary.json,analysis/suite.json}` through Slurm."""
    workdir = tmp_path_factory.mktemp("smoke_slurm")
    config = _smoke_config(workdir)
    targets = [f"results/runs/{SMOKE_RUN}/summary.json", f"results/runs/{SMOKE_RUN}/analysis/suite.json"]
    rc, log = slurm_cluster.snakemake(
        workdir, "--configfile", str(config), "--verbose", *targets, snakefile=REPO / "Snakefile", timeout=360
    )
    assert rc == 0, f"snakemake --profile slurm on the smoke config failed (exit {rc}):\n{log[-6000:]}"
    return workdir, log


@pytest.mark.slurm
@pytest.mark.integration
def test_smoke_run_trains_and_analyzes_as_slurm_jobs(slurm_cluster, smoke_run):
    workdir, log = smoke_run
    jobs = submitted_jobs(log)
    assert sorted(jobs.values()) == ["analyze_run", "tokenize", "train"], jobs  # run_config is a local rule
    for job_id, rule in jobs.items():
        info = slurm_cluster.job(job_id)
        assert info["JobState"] == "COMPLETED" and info["Comment"].startswith(f"rule_{rule}"), info
        assert list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job_id}.log")), rule
    assert "localrule run_config:" in log
    run_dir = workdir / "results" / "runs" / SMOKE_RUN
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_done"] == summary["target_steps"] == 32
    assert math.isfinite(summary["final_train_loss"]) and math.isfinite(summary["final_val_loss"])
    model = json.loads((run_dir / "model" / "config.json").read_text())
    assert model["model"]["n_layers"] == 16 and model["steps_done"] == 32
    assert (run_dir / "model" / "model.safetensors").is_file()
    suite = json.loads((run_dir / "analysis" / "suite.json").read_text())
    metrics = {"causal", "permutation", "usefulness", "perplexity", "weight_sparsity"}  # the weight_decay group's
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    assert AnalysisSettings.from_mapping(config["analysis"]).init_control  # the smoke config keeps the control
    controls = {control_name(m) for m in metrics if m in INIT_METRICS}  # the untrained control (issue 18)
    assert controls == {"causal@init", "permutation@init", "usefulness@init", "weight_sparsity@init"}
    assert set(suite["files"]) == metrics | controls, suite["files"]
    assert set(suite["metrics"]) == metrics | controls
    for name, files in suite["files"].items():  # the control's files are under analysis/init/
        folder = run_dir / "analysis" / (INIT_DIR if name in controls else "")
        assert files and all((folder / f).is_file() for f in files), (name, files)
    assert (workdir / "results" / "data").is_dir()  # everything under the temporary working directory


@pytest.mark.slurm
@pytest.mark.integration
def test_train_rule_sbatch_call_on_the_cluster(slurm_cluster, smoke_run):
    """The train rule's own resources (CPU smoke config; CI overlay): runtime, memory, CPUs, signal and requeue."""
    _, log = smoke_run
    call = sbatch_call(log, "train")
    flags = " ".join(call)
    for flag in ("--signal=URG@300", "--requeue", "--cpus-per-task=1", "--nodes=1", "--ntasks=1"):
        assert flag in call, f"{flag} missing from sbatch {flags}"
    for opt, value in (("-t", "10"), ("--mem", "2000"), ("-p", "ci"), ("-A", "sparsecod-ci")):
        assert call[call.index(opt) + 1] == value, f"{opt} {value} missing from sbatch {flags}"
    assert not any(a.startswith(("--gpus", "--gres")) for a in call), flags  # accelerator: cpu at smoke scale
    job_id = next(j for j, r in submitted_jobs(log).items() if r == "train")
    info = slurm_cluster.job(job_id)
    assert info["TimeLimit"] == "00:10:00" and info["MinMemoryNode"] == "2000M" and info["Requeue"] == "1"


@pytest.mark.slurm
@pytest.mark.integration
def test_train_rule_sbatch_arguments_at_paper_scale(slurm_cluster, tmp_path):
    """`snakemake --profile slurm` on config/config.yaml (no CI overlay) submits sub-L16's training with a GPU
    request from the run config: gpu = devices x num_nodes -> --gpus=4, threads -> --cpus-per-task=8, the memory
    from resources.train_mem_mb and a runtime from the run's FLOPs. `sbatch` is a stub on PATH that records its
    arguments, so nothing reaches the cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", 'printf "%s\\n" "$@" > "$STUB_DIR/sbatch.args"; echo 990001'),
                       ("scancel", 'echo "$@" >> "$STUB_DIR/scancel.args"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    data_id = cfg["data"]["id"]
    # Inputs of the train job exist, so it is the only job (no tokenizing of FineWeb-Edu here).
    (tmp_path / "results" / "data" / data_id).mkdir(parents=True)
    (tmp_path / "results" / "data" / data_id / "meta.json").write_text("{}")
    (tmp_path / "results" / "runs" / "sub-L16").mkdir(parents=True)
    time.sleep(0.01)
    (tmp_path / "results" / "runs" / "sub-L16" / "run.yaml").write_text("{}")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_DIR": str(tmp_path),
           "SPARSECOD_SLURM_PARTITION": slurm_cluster.partition, "SPARSECOD_SLURM_ACCOUNT": "gpu-project"}
    proc, log_path = slurm_cluster.start_snakemake(
        tmp_path, "results/runs/sub-L16/summary.json", "--configfile", str(REPO / "config" / "config.yaml"),
        snakefile=REPO / "Snakefile", overlay=False, env=env,
    )
    args_file = tmp_path / "sbatch.args"
    try:
        deadline = time.monotonic() + 90
        while not args_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.2)
    finally:
        slurm_cluster.stop_snakemake(proc, grace=10)
    assert args_file.exists(), f"no sbatch call:\n{log_path.read_text()[-4000:]}"
    call = args_file.read_text().split("\n")
    flags = " ".join(a for a in call if not a.startswith("--wrap"))
    print(f"sbatch {flags}")
    assert "--comment" in call and call[call.index("--comment") + 1] == "rule_train_wildcards_sub-L16", flags
    for flag in ("--gpus=4", "--cpus-per-task=8", "--nodes=1", "--requeue", "--signal=URG@300"):
        assert flag in call, f"{flag} missing from sbatch {flags}"
    for opt, value in (("--mem", str(cfg["resources"]["train_mem_mb"])), ("-p", slurm_cluster.partition),
                       ("-A", "gpu-project")):
        assert call[call.index(opt) + 1] == value, f"{opt} {value} missing from sbatch {flags}"
    assert int(call[call.index("-t") + 1]) > 10  # minutes, from the FLOPs at resources.mfu × gpu_peak_flops (not the default 60)
    assert not any(a.startswith("--ntasks") for a in call)  # GPU jobs get no --ntasks from the plugin
    assert (tmp_path / "scancel.args").read_text().split() == ["990001"]  # Ctrl-C cancels the (fake) job


@pytest.mark.slurm
@pytest.mark.integration
def test_preempted_training_resumes_and_matches_uninterrupted(slurm_cluster, smoke_run):
    """Preemption through the workflow: the train job of the smoke run gets SIGURG (what `--signal=URG@300` sends
    before the time limit) after its first checkpoint; Lightning saves hpc_ckpt_1.ckpt and runs `scontrol requeue`,
    Slurm restarts the same job id, the rerun resumes from that checkpoint and Snakemake finishes normally. The final
    weights are bit-identical to the uninterrupted first training of the same run (smoke_run)."""
    from safetensors.torch import load_file

    workdir, _ = smoke_run
    run_dir = workdir / "results" / "runs" / SMOKE_RUN
    reference = workdir / "uninterrupted"
    run_dir.rename(reference)  # the next call trains the run again (run_config + train)
    proc, log_path = slurm_cluster.start_snakemake(
        workdir, "--configfile", str(workdir / "config.yaml"), "--verbose", f"results/runs/{SMOKE_RUN}/summary.json",
        snakefile=REPO / "Snakefile", log_name="snakemake-preempt.out",
    )
    try:
        first_ckpt = run_dir / "checkpoints" / "last.ckpt"  # step 8 of 32: the signal handler is installed
        deadline = time.monotonic() + 150
        while not first_ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_ckpt.exists(), f"no checkpoint before the deadline:\n{log_path.read_text()[-4000:]}"
        job_id = next(j for j, r in submitted_jobs(log_path.read_text()).items() if r == "train")
        assert slurm_cluster.job(job_id)["Restarts"] == "0"
        slurm_cluster.signal(job_id, "URG")
        rc, log = slurm_cluster.wait_snakemake(proc, log_path, timeout=240)
    finally:
        slurm_cluster.stop_snakemake(proc)
    assert rc == 0, f"snakemake failed after the preemption (exit {rc}):\n{log[-6000:]}"
    info = slurm_cluster.job(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info  # requeued once, same job id
    assert list(submitted_jobs(log)) == [job_id]  # Snakemake submitted it once; Slurm restarted it
    program_log = (workdir / "results" / "logs" / "train" / f"{SMOKE_RUN}.log").read_text(errors="replace")
    resumed = re.search(r"resuming from \S*/checkpoints/(hpc_ckpt_\d+|last)\.ckpt \(step (\d+)\)", program_log)
    assert resumed and 0 < int(resumed.group(2)) < 32, program_log[-3000:]
    assert not list((run_dir / "checkpoints").glob("hpc_ckpt_*"))  # superseded by the final last.ckpt

    got, want = load_file(run_dir / "model" / "model.safetensors"), load_file(reference / "model" / "model.safetensors")
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"
    a, b = (json.loads((d / "summary.json").read_text()) for d in (reference, run_dir))
    for key in ("steps_done", "final_train_loss", "final_val_loss"):
        assert a[key] == b[key], key


@pytest.mark.slurm
@pytest.mark.integration
def test_preempted_two_process_training_requeues_and_finishes(slurm_cluster, smoke_run):
    """Issue 16: the same preemption with `devices: 2` (one Slurm task; Lightning starts the second process, DDP on
    CPU). Both processes agree on the step (requeue.SyncedRequeue), hpc_ckpt_<n>.ckpt is saved, rank 0 requeues the
    job, Slurm restarts the same job id and the rerun resumes from the checkpoint and completes with world size 2."""
    workdir, _ = smoke_run
    run_dir = workdir / "results" / "runs" / SMOKE_RUN
    if run_dir.exists():
        run_dir.rename(workdir / f"before_two_process_{time.time_ns()}")
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["groups"]["weight_decay"]["train"].update(devices=2, strategy="ddp", micro_batch=2)  # global batch 4 kept
    config = workdir / "config-2proc.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc, log_path = slurm_cluster.start_snakemake(
        workdir, "--configfile", str(config), "--verbose", f"results/runs/{SMOKE_RUN}/summary.json",
        snakefile=REPO / "Snakefile", log_name="snakemake-preempt-2proc.out",
    )
    try:
        first_ckpt = run_dir / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 240
        while not first_ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_ckpt.exists(), f"no checkpoint before the deadline:\n{log_path.read_text()[-4000:]}"
        job_id = next(j for j, r in submitted_jobs(log_path.read_text()).items() if r == "train")
        slurm_cluster.signal(job_id, "URG")
        rc, log = slurm_cluster.wait_snakemake(proc, log_path, timeout=360)
    finally:
        slurm_cluster.stop_snakemake(proc)
    assert rc == 0, f"snakemake failed after the preemption (exit {rc}):\n{log[-6000:]}"
    info = slurm_cluster.job(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    program_log = (workdir / "results" / "logs" / "train" / f"{SMOKE_RUN}.log").read_text(errors="replace")
    # the rerun's log (the rule truncates it): it resumed from the checkpoint both processes saved at the signal
    resumed = re.search(r"resuming from \S*/checkpoints/(hpc_ckpt_\d+|last)\.ckpt \(step (\d+)\)", program_log)
    assert resumed and resumed.group(1).startswith("hpc_ckpt_") and 0 < int(resumed.group(2)) < 32, program_log[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps_done"] == 32 and summary["status"] == "completed"


@pytest.mark.slurm
@pytest.mark.integration
def test_warning_signal_reaches_the_command_without_b(slurm_cluster, tmp_path):
    """`--signal=URG@s` (what the train rule asks for) reaches the rule's command inside the plugin's job step and
    the job still completes; `--signal=B:URG@s` only signals the batch shell, so the command never sees it."""
    rc, log = slurm_cluster.snakemake(tmp_path, "--verbose", snakefile=HERE / "data" / "Snakefile.signal", timeout=240)
    assert rc == 0, f"snakemake failed (exit {rc}):\n{log[-6000:]}"
    step = (tmp_path / "out" / "step.txt").read_text().split(maxsplit=1)
    batch = (tmp_path / "out" / "batch.txt").read_text().split(maxsplit=1)
    assert step[1].startswith("signaled"), step
    assert batch[1].startswith("not signaled"), batch
    for job_id in (step[0], batch[0]):
        assert slurm_cluster.job(job_id)["JobState"] == "COMPLETED"
