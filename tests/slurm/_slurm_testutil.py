"""Helpers for tests against the local single-node Slurm cluster (issue 8; tests/slurm/start_cluster.sh).

`SlurmCluster` wraps the Slurm client commands the tests need (sbatch, scontrol, requeue, scancel --signal) and
runs Snakemake with the repository's `slurm` profile plus the CI overlay `tests/slurm/profile` (blocking, or
started in the background for tests that act on a running job); `submitted_jobs` and `sbatch_call` read
Snakemake's log. The skip policy lives here
too: without root or without the packages and apt the Slurm tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START = HERE / "start_cluster.sh"
STOP = HERE / "stop_cluster.sh"
OVERLAY = HERE / "profile"
PARTITION = "ci"  # the partition start_cluster.sh defines (and the overlay's slurm_partition)
FAKE_GPUS = 1
DAEMONS = ("slurmctld", "slurmd", "slurm-client", "munge")
FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def in_ci() -> bool:
    """True when the environment says CI (CI=true/1/yes), where Slurm tests must run, never skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _installed(package: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return res.returncode == 0 and "install ok installed" in res.stdout


def cluster_unavailable_reason() -> str | None:
    """Why start_cluster.sh cannot run here (None when it can): it needs root and the packages or apt-get."""
    if os.geteuid() != 0:
        return "the Slurm tests start a local cluster and need root (run pytest as root, or in CI)"
    if shutil.which("dpkg-query") is None:
        return "the Slurm tests need a Debian/Ubuntu machine (dpkg + apt-get) to install slurmctld/slurmd/munge"
    missing = [p for p in DAEMONS if not _installed(p)]
    if missing and shutil.which("apt-get") is None:
        return f"Slurm packages missing ({', '.join(missing)}) and apt-get is not available to install them"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`, or under CI=true fail loudly: CI must exercise the Slurm path."""
    if in_ci():
        pytest.fail(f"Slurm tests cannot run in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def _pid_alive(pidfile: str, comm: str) -> bool:
    try:
        pid = Path(pidfile).read_text().strip()
        return Path(f"/proc/{pid}/comm").read_text().strip() == comm
    except (OSError, ValueError):
        return False


def cluster_running() -> bool:
    """True when slurmctld and slurmd from a previous start_cluster.sh run are alive (pidfile + comm)."""
    return _pid_alive("/run/slurmctld.pid", "slurmctld") and _pid_alive("/run/slurmd.pid", "slurmd")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol -o show job` (one line of Key=Value) -> dict; values with spaces (Command=...) are cut."""
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", text))


@dataclass(frozen=True)
class SlurmCluster:
    """The running test cluster: partition name, fake GPU count and helpers around the Slurm CLI."""

    partition: str = PARTITION
    fake_gpus: int = FAKE_GPUS

    def sbatch(self, *args: str, cwd: Path | None = None) -> str:
        """Submit with `sbatch --parsable -p <partition> *args`; returns the job id (checked to be digits)."""
        res = _run(["sbatch", "--parsable", "-p", self.partition, *args], cwd=cwd)
        assert res.returncode == 0, f"sbatch {' '.join(args)} failed: {res.stderr.strip()}"
        job_id = res.stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch printed {res.stdout!r}, expected a job id"
        return job_id

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, TresPerJob, MinMemoryNode, ...)."""
        res = _run(["scontrol", "-o", "show", "job", str(job_id)])
        assert res.returncode == 0, f"scontrol show job {job_id}: {res.stderr.strip()}"
        return parse_scontrol(res.stdout)

    def wait_state(self, job_id: str, states: set[str], timeout: float = 60) -> dict[str, str]:
        """Poll until the job is in one of `states`; fails early on a failure state or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            state = info.get("JobState", "")
            if state in states:
                return info
            if state in FAILED_STATES - states:
                pytest.fail(f"Slurm job {job_id} ended {state} while waiting for {sorted(states)}: {info}")
            if time.monotonic() > deadline:
                pytest.fail(f"Slurm job {job_id} still {state} after {timeout}s (wanted {sorted(states)})")
            time.sleep(0.2)

    def requeue(self, job_id: str) -> None:
        """`scontrol requeue`: the job is killed and pending again; it restarts after cred_expire (10 s here)."""
        res = _run(["scontrol", "requeue", str(job_id)])
        assert res.returncode == 0, f"scontrol requeue {job_id}: {res.stderr.strip()}"

    def cancel(self, job_id: str) -> None:
        _run(["scancel", str(job_id)])

    def signal(self, job_id: str, name: str) -> None:
        """`scancel --signal=<name>`: the signal goes to the job's steps (not the batch shell), as `--signal=<name>@s`."""
        res = _run(["scancel", f"--signal={name}", str(job_id)])
        assert res.returncode == 0, f"scancel --signal={name} {job_id}: {res.stderr.strip()}"

    def start_snakemake(
        self, workdir: Path, *args: str, snakefile: Path | None = None, overlay: bool = True,
        env: dict[str, str] | None = None, log_name: str = "snakemake.out",
    ) -> tuple[subprocess.Popen, Path]:
        """Start `snakemake --profile <repo>/slurm [--profile tests/slurm/profile] *args` in `workdir`.

        Returns the process and its log file (stdout and stderr). `overlay=False` uses the repository profile alone.
        """
        cmd = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "slurm")]
        if overlay:
            cmd += ["--profile", str(OVERLAY)]
        if snakefile is not None:
            cmd += ["--snakefile", str(snakefile)]
        log_path = workdir / log_name
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [*cmd, *args], cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        return proc, log_path

    @staticmethod
    def stop_snakemake(proc: subprocess.Popen, grace: float = 30) -> None:
        """SIGINT (Snakemake then scancels its jobs; SIGTERM would leave them running), SIGKILL after `grace` s."""
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait_snakemake(self, proc: subprocess.Popen, log_path: Path, timeout: float) -> tuple[int, str]:
        """Wait for a started Snakemake; on timeout stop it (stop_snakemake) and fail with the end of its log."""
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_snakemake(proc)
            pytest.fail(f"snakemake did not finish within {timeout}s:\n{log_path.read_text()[-4000:]}")
        return rc, log_path.read_text()

    def snakemake(
        self, workdir: Path, *args: str, snakefile: Path | None = None, timeout: float = 240
    ) -> tuple[int, str]:
        """Run `snakemake --profile <repo>/slurm --profile tests/slurm/profile *args` in `workdir`.

        Returns (exit code, combined output, also kept in workdir/snakemake.out). On timeout Snakemake gets
        SIGINT first, which makes it scancel its jobs (SIGTERM would leave them running), then SIGKILL.
        """
        proc, log_path = self.start_snakemake(workdir, *args, snakefile=snakefile)
        return self.wait_snakemake(proc, log_path, timeout)


def submitted_jobs(log: str) -> dict[str, str]:
    """Slurm job id -> rule, from Snakemake's "Job N has been submitted with SLURM jobid X (log: .../rule_R/...)"."""
    return dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", log))


def sbatch_call(log: str, rule: str) -> list[str]:
    """The sbatch arguments the plugin logged (--verbose) for the one job of `rule`, without the --wrap payload."""
    calls = [c for c in re.findall(r"^sbatch call: (.*)$", log, re.M) if re.search(rf"--comment rule_{rule}(_| )", c)]
    assert len(calls) == 1, f"expected one sbatch call for rule {rule}, found {len(calls)}"
    return shlex.split(calls[0].split(" --wrap=")[0])


def start_cluster() -> None:
    """Run start_cluster.sh (FAKE_GPUS=1); fails the caller with the script's output when it does not work."""
    env = {**os.environ, "FAKE_GPUS": str(FAKE_GPUS)}
    res = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600, env=env)
    if res.returncode != 0:
        pytest.fail(
            f"tests/slurm/start_cluster.sh failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}",
            pytrace=False,
        )


def stop_cluster() -> str:
    """Run stop_cluster.sh (stops only the daemons start_cluster.sh started); returns its output."""
    res = subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)
    return res.stdout + res.stderr
