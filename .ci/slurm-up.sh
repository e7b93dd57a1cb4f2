#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests/test_slurm_cluster.py:
# Debian's munge, slurmctld and slurmd, one node (this host, all its CPUs), one partition `debug`.
# Runs as root (apt-get, daemons). Works in a container without systemd: no cgroup plugins
# (proctrack/linuxproc, task/none), daemons started directly. Idempotent: a cluster already up
# is left as it is. Exit 0 once `sinfo` shows the node idle; otherwise exit 1, the last line of
# output saying why (.ci/run hands that line to the test, which is skipped with it).
set -uo pipefail

fail() { echo "SLURM unavailable: $*"; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds (a hang guard only)
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    fail "$what (still not after ${limit} s)"
}
node_idle() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^idle'; }

if command -v sinfo >/dev/null && pgrep -x slurmd >/dev/null && pgrep -x slurmctld >/dev/null && node_idle; then
    echo "SLURM already up: $(sinfo -h -o '%P %D %T' | head -1)"
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root to install and start munge, slurmctld and slurmd (run as root)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || fail "no apt-get on this machine to install slurmctld, slurmd, munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/tmp/sgdlab-slurm-apt.log 2>&1 \
        || fail "apt-get update failed (no package index reachable?): see /tmp/sgdlab-slurm-apt.log"
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
        >>/tmp/sgdlab-slurm-apt.log 2>&1 \
        || fail "apt-get install slurmctld slurmd slurm-client munge failed: see /tmp/sgdlab-slurm-apt.log"
fi

# munge: the key the package made (or a new one), then the daemon as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force >/dev/null 2>&1 || fail "cannot create /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
    wait_for 20 "munged answers" sh -c 'munge -n | unmunge'
fi

host="$(hostname -s)"
cpus="$(nproc)"
# Memory a job may ask for (MB): what the machine has, minus a margin for the daemons and the driver.
mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<EOF
# Written by sgdlab's .ci/slurm-up.sh: one node, one partition, no cgroups (containers without systemd).
ClusterName=sgdlab-ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# a cancelled task gets SIGTERM, then SIGKILL this many seconds later
KillWait=5
MinJobAge=300
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
wait_for 30 "slurmctld answers" scontrol ping
# slurmd loads a cgroup plugin at start even with proctrack/linuxproc; where the container's cgroups
# do not allow it, Slurm >= 23.02 can be told `CgroupPlugin=disabled` (older ones reject that line).
if ! pgrep -x slurmd >/dev/null && ! /usr/sbin/slurmd; then
    printf 'CgroupPlugin=disabled\n' >/etc/slurm/cgroup.conf
    /usr/sbin/slurmd || { rm -f /etc/slurm/cgroup.conf; fail "slurmd did not start (see /var/log/slurm/slurmd.log)"; }
fi
wait_for 60 "node ${host} idle in sinfo" node_idle
echo "SLURM up: $(sinfo -h -o '%P %D %T %C' | head -1) (partition, nodes, state, CPUs A/I/O/T)"
