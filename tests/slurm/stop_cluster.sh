#!/usr/bin/env bash
# Stop the local test cluster that start_cluster.sh started: cancel its jobs, then stop slurmd, slurmctld and
# munged, each only if start_cluster.sh started it (marker in /run/sparsecod-slurm/) and only by the PID in its
# pidfile after checking /proc/PID/comm names that daemon. Idempotent; removes stale pidfiles. Packages, config
# and job state are kept (job ids continue after a restart).
set -euo pipefail

STATE=/run/sparsecod-slurm

say() { echo "[stop_cluster] $*"; }

pid_alive() { # pid_alive PIDFILE COMM -> prints PID of a live process called COMM
  local pid
  [[ -r $1 ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$2" ]] || return 1
  echo "$pid"
}

stop_daemon() { # stop_daemon NAME PIDFILE
  local name=$1 pidfile=$2 pid i
  [[ -e $STATE/started-$name ]] || return 0
  if pid=$(pid_alive "$pidfile" "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ -e /proc/$pid ]] || break
      sleep 0.1
    done
    if [[ -e /proc/$pid ]]; then
      say "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name ($pid)"
  fi
  # The pidfile is stale now (a stale /run/slurmctld.pid also breaks the Debian prerm on purge).
  if ! pid_alive "$pidfile" "$name" >/dev/null; then rm -f "$pidfile"; fi
  rm -f "$STATE/started-$name"
}

[[ $(id -u) -eq 0 ]] || { echo "[stop_cluster] ERROR: must run as root" >&2; exit 1; }

if [[ -e $STATE/started-slurmctld ]] && pid_alive /run/slurmctld.pid slurmctld >/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
  if [[ -n ${jobs// /} ]]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
  fi
fi
stop_daemon slurmd /run/slurmd.pid
stop_daemon slurmctld /run/slurmctld.pid
stop_daemon munged /run/munge/munged.pid

# With no controller left, remove the config start_cluster.sh wrote: while /etc/slurm/slurm.conf names a dead
# controller every Slurm client call waits ~10 s before failing, and the Snakemake Slurm plugin runs
# `scontrol show config` when it is imported, i.e. in every snakemake call on this machine. Without the file
# the clients fail at once. start_cluster.sh writes it again; job state in /var/spool is kept.
if ! pid_alive /run/slurmctld.pid slurmctld >/dev/null && ! pid_alive /run/slurmd.pid slurmd >/dev/null; then
  for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [[ -e $f ]] && head -n1 "$f" | grep -qF "# written by sparsecod tests/slurm/start_cluster.sh"; then
      rm -f "$f"
    fi
  done
fi
say "done"
