"""Slurm for real (issue 8): a live single-node cluster, the Snakemake Slurm executor plugin with the repository's
`slurm` profile plus the CI overlay, the sbatch flags the plugin derives from rule resources, and requeue.

The cluster tests share one session cluster (`slurm_cluster`) and one Snakemake run of the throwaway workflow
tests/slurm/data/Snakefile (`tiny_run`). The first tests below check the skip/fail policy without a cluster.
"""

import re
import time
from pathlib import Path

import pytest
import yaml

from _slurm_testutil import HERE, OVERLAY, REPO, cluster_unavailable_reason, skip_or_fail

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


def _sbatch_call(log: str, rule: str) -> str:
    """The sbatch command line the plugin logged (--verbose) for `rule`, without the --wrap payload."""
    calls = [c for c in re.findall(r"^sbatch call: (.*)$", log, re.M) if f"--comment rule_{rule} " in c]
    assert len(calls) == 1, f"expected one sbatch call for rule {rule}, found {len(calls)}"
    return calls[0].split(" --wrap=")[0]


@pytest.mark.slurm
@pytest.mark.integration
def test_workflow_outputs_hold_real_job_ids(slurm_cluster, tiny_run):
    workdir, log = tiny_run
    submitted = dict(re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+)/", log))
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
    call = _sbatch_call(log, "gpu_probe").split()
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
    call = _sbatch_call(log, "train").split()
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
