#!/bin/bash
# Single-node Slurm 22.05 (Debian bookworm) for the Slurm executor's integration tests, no
# systemd: the recipe of ../shared/spec/slurm.md section 2, verbatim.
#   .ci/slurm.sh up    install if needed, write config, start munged/slurmctld/slurmd, wait idle
#   .ci/slurm.sh down  stop the three daemons by the PIDs in their pid files
#   .ci/slurm.sh ctld-stop | ctld-start   the controller alone, keeping its state (tests)
set -euo pipefail

alive() { case "$(ps -o stat= -p "$1" 2>/dev/null || true)" in ""|Z*) return 1;; esac; }

down() {
  local f p
  # end every job first: a slurmstepd outlives slurmd, and after the state wipe in
  # up() its late "job done" message would hit the new controller's job of the same id
  if [ -s /run/slurmctld.pid ] && alive "$(cat /run/slurmctld.pid)"; then
    timeout 10 scancel --partition=debug 2>/dev/null || true
    for _ in $(seq 1 100); do                       # KillWait=5, so 10 s is plenty
      [ -z "$(timeout 5 squeue -h -t R,CG,S -o %i 2>/dev/null || true)" ] && break
      sleep 0.1
    done
  fi
  for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$p" || break; sleep 0.1; done   # 5 s, then SIGKILL
    kill -9 "$p" 2>/dev/null || true
    rm -f "$f"
  done
}

up() {
  down    # daemons left over from an earlier run would keep the ports and the old config
  if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] || [ ! -x /usr/sbin/munged ] || ! command -v sbatch >/dev/null; then
    # exit 3: the packages could not be installed (.ci/run then runs without Slurm)
    apt-get update -qq || exit 3
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      munge slurmctld slurmd slurm-client >/dev/null || exit 3
  fi

  # gres/gpu drops GPUs that have no File=, so give it two inert char devices
  for i in 0 1; do [ -e /dev/fakegpu$i ] || mknod -m 666 /dev/fakegpu$i c 1 3; done

  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
  local mem
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$(( mem > 2048 ? mem - 1024 : mem ))

  cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MinJobAge=86400
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  echo 'Name=gpu File=/dev/fakegpu[0-1]' > /etc/slurm/gres.conf

  # munge: the package's postinst makes /etc/munge/munge.key; make one if it is missing
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  if ! munge -n >/dev/null 2>&1; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged          # forks; pid in /run/munge/munged.pid
  fi

  # fresh controller state every run: no stale DRAIN reasons, jobs or ClusterName
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
  # -D keeps them in the foreground so $! is the daemon itself; setsid detaches them
  # from this shell's process group. They also write /run/slurmctld.pid, /run/slurmd.pid.
  setsid /usr/sbin/slurmctld -D >/dev/null 2>&1 </dev/null &
  local ctld=$!
  setsid /usr/sbin/slurmd -D -N localhost >/dev/null 2>&1 </dev/null &

  local st="" deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    st=$(timeout 5 sinfo -h -o '%T' 2>/dev/null || true)
    [ "$st" = idle ] && return 0
    alive "$ctld" || break
    sleep 0.2
  done
  echo "slurm node not idle (state '$st')" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
  return 1
}

# The controller alone, for the test that stops it under a queued job: its state is kept
# (no wipe), so the jobs it had survive, as on a real cluster's controller restart.
ctld_stop() {
  local p
  [ -s /run/slurmctld.pid ] || return 0
  p=$(cat /run/slurmctld.pid)
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  rm -f /run/slurmctld.pid
}

ctld_start() {
  setsid /usr/sbin/slurmctld -D >/dev/null 2>&1 </dev/null &
  local deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    timeout 5 scontrol ping 2>/dev/null | grep -q " is UP" && return 0
    sleep 0.2
  done
  echo "slurmctld did not come back" >&2
  return 1
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  ctld-stop) ctld_stop ;;
  ctld-start) ctld_start ;;
  *) echo "usage: $0 up|down|ctld-stop|ctld-start" >&2; exit 2 ;;
esac
