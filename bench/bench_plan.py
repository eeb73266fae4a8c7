"""Planning cost of the workflow: wall time and job count of `snakemake -n all` (issue 9).

Runs the dry run from the repository root in a subprocess, once per configuration: the paper config
(`config/config.yaml`, Snakemake's default) and smoke (`--configfile config/smoke.yaml`), `--reps` times each,
alternating. The wall time covers everything a user waits for: interpreter start-up, parsing the Snakefile and
the config, validating it against the schema, building the run registry and the DAG, and checking which
outputs exist. The job count is the `total` row of the "Job stats" table Snakemake prints. A dry run writes no
lock and no output, so it is safe next to a running workflow (it only reads the locks of others).

Usage: python bench/bench_plan.py [--quick] [--reps 3] [--config paper=config/config.yaml --config smoke=...]
The last line is `name=value` pairs: jobs_<name>=... plan_s_<name>=... (median wall seconds).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = {"paper": None, "smoke": "config/smoke.yaml"}  # None: the Snakefile's default configfile


def versions() -> str:
    out = []
    for mod in ("torch", "transformers", "snakemake"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            out.append(f"{mod} not installed")
    return ", ".join(out)


def banner(label: str) -> float:
    load = os.getloadavg()[0]
    print(f"[{label}] {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {versions()}  threads: n/a (subprocesses; "
          f"nproc {os.cpu_count()})  loadavg(1 min) {load:.2f}", flush=True)
    return load


def snakemake_cmd() -> list[str]:
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    return [exe] if exe else [sys.executable, "-m", "snakemake"]


def job_stats(output: str) -> tuple[int, dict[str, int]]:
    """Parse the first "Job stats:" table: (total, {rule: count})."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    counts: dict[str, int] = {}
    for line in lines[start + 3:]:  # skip the header and the dashes
        m = re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    total = counts.pop("total")
    if total != sum(counts.values()):
        raise RuntimeError(f"Job stats total {total} != sum of rows {sum(counts.values())}")
    return total, counts


def dry_run(configfile: str | None) -> tuple[float, int, dict[str, int]]:
    cmd = snakemake_cmd() + ["-n", "all"] + (["--configfile", configfile] if configfile else [])
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    total, counts = job_stats(res.stdout + "\n" + res.stderr)
    return elapsed, total, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one dry run per config (< 1 min)")
    p.add_argument("--reps", type=int, default=3, help="dry runs per config (median reported)")
    p.add_argument("--config", action="append", default=[], metavar="NAME=PATH",
                   help="configs to plan (default: paper=config/config.yaml smoke=config/smoke.yaml)")
    args = p.parse_args()
    reps = 1 if args.quick else args.reps
    configs = dict(c.split("=", 1) for c in args.config) if args.config else DEFAULT_CONFIGS
    load_start = banner("start")

    times: dict[str, list[float]] = {name: [] for name in configs}
    jobs: dict[str, int] = {}
    rules: dict[str, dict[str, int]] = {}
    for _ in range(reps):
        for name, path in configs.items():
            t, total, counts = dry_run(path)
            times[name].append(t)
            if jobs.setdefault(name, total) != total:
                raise RuntimeError(f"{name}: job count changed between dry runs ({jobs[name]} -> {total})")
            rules[name] = counts

    print(f"\n{'config':8s} {'configfile':22s} {'jobs':>6s} {'rules':>6s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, path in configs.items():
        ts = times[name]
        print(f"{name:8s} {path or '(default)':22s} {jobs[name]:6d} {len(rules[name]):6d} {statistics.median(ts):9.2f} "
              f"{min(ts):7.2f} {max(ts):7.2f}")
    for name in configs:
        biggest = sorted(rules[name].items(), key=lambda kv: -kv[1])[:6]
        print(f"  {name}: largest rules " + ", ".join(f"{r} {n}" for r, n in biggest))
    load_end = banner("end")
    pairs = {}
    for name in configs:
        pairs[f"jobs_{name}"] = jobs[name]
        pairs[f"plan_s_{name}"] = f"{statistics.median(times[name]):.3g}"
    pairs.update({"reps": reps, "load_start": f"{load_start:.3g}", "load_end": f"{load_end:.3g}"})
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
