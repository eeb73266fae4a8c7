#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine for the Slurm tests (issue 8): munged, slurmctld and slurmd
# on localhost, one partition "ci", optionally fake GPUs so `--gpus=N` / `--gres=gpu:N` requests are accepted
# on a GPU-less node. Idempotent: a running cluster with the same settings is reused; changed settings rewrite
# the config and restart only slurmctld/slurmd. Needs root; installs the Debian/Ubuntu packages when missing.
#
# Knobs (environment):
#   FAKE_GPUS=N            fake GPUs on the node (default 1; 0 = none). Each is a /dev/null-like char device
#                          (Slurm 22.05 drops file-less GPUs and marks the node INVAL).
#   SLURM_START_TIMEOUT=S  seconds to wait for the node to become idle (default 60).
#
# Files: /etc/slurm/slurm.conf and gres.conf (only written when absent or written by this script: a foreign
# cluster's config is never touched), logs in /var/log/slurm/, state in /var/spool/slurm{ctld,d}/, and marker
# files in /run/sparsecod-slurm/ recording which daemons this script started (stop_cluster.sh stops only those).
#
# Why these settings: without slurmdbd `sacct` fails, so the Snakemake plugin must poll with
# `slurm-status-command: squeue`, which it only honours while MinJobAge >= 3 x its init seconds; finished jobs
# must also stay visible longer than the plugin's longest polling gap (180 s). Hence MinJobAge=300.
set -euo pipefail

FAKE_GPUS=${FAKE_GPUS:-1}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
PARTITION=ci
NODE=localhost
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
STATE=/run/sparsecod-slurm
LOG_DIR=/var/log/slurm
MARK="# written by sparsecod tests/slurm/start_cluster.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "[start_cluster] $*"; }
die() { echo "[start_cluster] ERROR: $*" >&2; exit 1; }

[[ $FAKE_GPUS =~ ^[0-9]+$ ]] || die "FAKE_GPUS=$FAKE_GPUS: give a whole number of fake GPUs (0 = none)"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "SLURM_START_TIMEOUT=$TIMEOUT: give a number of seconds"
[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, writes /etc/slurm, starts daemons)"

# pid_alive PIDFILE COMM: prints the PID when the pidfile names a live process called COMM.
pid_alive() {
  local pid
  [[ -r $1 ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$2" ]] || return 1
  echo "$pid"
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and apt-get is not available"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The postinst scripts may fail to start services in a container (policy-rc.d); the daemons are started below.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Node line from the hardware slurmd sees (CPUs, sockets/cores/threads), memory = MemTotal minus 5 % headroom.
node_line() {
  local hw mem
  hw=$(slurmd -C | grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*') ||
    die "slurmd -C did not report the CPU layout"
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
  local gres=""
  ((FAKE_GPUS > 0)) && gres=" Gres=gpu:$FAKE_GPUS"
  echo "NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $hw RealMemory=$mem$gres State=UNKNOWN"
}

render_conf() {
  cat <<EOF
$MARK; do not edit by hand.
ClusterName=sparsecod-ci
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (its old credential must expire first;
# starting earlier fails with "Job credential revoked"). Default 120 s; 10 s is plenty on one local node.
AuthInfo=cred_expire=10
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
MailProg=/bin/true
# No cgroups needed; task/affinity binds CPUs (task/none makes every srun print a cpu-binding warning).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Test pending jobs every few seconds (defaults: 60 s main loop, 30 s backfill), e.g. a requeued job whose
# begin time has passed; cheap on one node.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that gives no --mem is handed all node memory and jobs run one at a time.
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue status polling of the Snakemake plugin needs finished jobs visible this long (see the script header).
MinJobAge=300
JobRequeue=1
KillWait=5
EOF
  ((FAKE_GPUS > 0)) && echo "GresTypes=gpu"
  echo "$NODE_LINE"
  echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
}

render_gres() {
  echo "$MARK; do not edit by hand."
  local i
  for ((i = 0; i < FAKE_GPUS; i++)); do
    echo "NodeName=$NODE Name=gpu File=/dev/sparsecod-fakegpu$i"
  done
}

# write_if_changed FILE CONTENT: atomic write; returns 0 when the file changed. Refuses a foreign file.
write_if_changed() {
  local file=$1 content=$2
  if [[ -e $file ]] && ! head -n1 "$file" | grep -qF "$MARK"; then
    die "$file exists and was not written by this script (a real cluster's config?); refusing to overwrite it. Move it away to run the local test cluster."
  fi
  if [[ -e $file ]] && [[ $(cat "$file") == "$content" ]]; then
    return 1
  fi
  printf '%s\n' "$content" >"$file.tmp.$$"
  chmod 0644 "$file.tmp.$$"
  mv -f "$file.tmp.$$" "$file"
  return 0
}

stop_pid() { # stop_pid PIDFILE COMM
  local pid i
  pid=$(pid_alive "$1" "$2") || return 0
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    [[ -e /proc/$pid ]] || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

show_logs() {
  local f
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
    [[ -r $f ]] && { echo "----- tail $f" >&2; tail -n 30 "$f" >&2; }
  done
  command -v sinfo >/dev/null && { echo "----- sinfo" >&2; sinfo -N -l >&2 || true; }
  return 0
}

start=$(date +%s.%N)
install_packages
install -d -m 0755 "$STATE" "$CONF_DIR"

# --- munge ------------------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating the munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! pid_alive /run/munge/munged.pid munged >/dev/null; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged --force
  touch "$STATE/started-munged"
fi
for ((i = 0; i < 50; i++)); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || { show_logs; die "munge does not work (munge -n | unmunge failed)"; }

# --- config -----------------------------------------------------------------------------------------------
NODE_LINE=$(node_line)
changed=0
if ((FAKE_GPUS > 0)); then
  for ((i = 0; i < FAKE_GPUS; i++)); do
    dev=/dev/sparsecod-fakegpu$i
    [[ -c $dev ]] || mknod -m 0666 "$dev" c 1 3 || die "cannot create the fake GPU device $dev (mknod); run with FAKE_GPUS=0"
  done
  write_if_changed "$GRES_CONF" "$(render_gres)" && changed=1
elif [[ -e $GRES_CONF ]] && head -n1 "$GRES_CONF" | grep -qF "$MARK"; then
  rm -f "$GRES_CONF"
  changed=1
fi
write_if_changed "$CONF" "$(render_conf)" && changed=1

# --- slurmctld / slurmd -----------------------------------------------------------------------------------
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld "$LOG_DIR"
install -d -m 0755 /var/spool/slurmd
if ((changed)); then
  # A running cluster of ours with the old settings: restart it (slurmd re-reads gres and the node line).
  if pid_alive /run/slurmd.pid slurmd >/dev/null || pid_alive /run/slurmctld.pid slurmctld >/dev/null; then
    say "configuration changed: restarting slurmctld and slurmd"
    stop_pid /run/slurmd.pid slurmd
    stop_pid /run/slurmctld.pid slurmctld
  fi
fi
if ! pid_alive /run/slurmctld.pid slurmctld >/dev/null; then
  say "starting slurmctld"
  rm -f /run/slurmctld.pid
  /usr/sbin/slurmctld || { show_logs; die "slurmctld failed to start"; }
  touch "$STATE/started-slurmctld"
fi
if ! pid_alive /run/slurmd.pid slurmd >/dev/null; then
  say "starting slurmd"
  rm -f /run/slurmd.pid
  /usr/sbin/slurmd -N "$NODE" || { show_logs; die "slurmd failed to start"; }
  touch "$STATE/started-slurmd"
fi

# --- wait until the node takes jobs -----------------------------------------------------------------------
deadline=$(($(date +%s) + TIMEOUT))
resumed=0
while :; do
  state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
  case $state in
    idle | mixed | allocated | completing) break ;;
    drain* | inval | down*)
      if ((!resumed)); then
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
        resumed=1
      fi
      ;;
  esac
  if (($(date +%s) >= deadline)); then
    show_logs
    die "node $NODE not idle after ${TIMEOUT}s (state: '${state:-unreachable}'); see the logs above"
  fi
  sleep 0.2
done
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
say "cluster up in ${elapsed}s: partition $PARTITION, node $NODE ($state), fake GPUs: $FAKE_GPUS"
