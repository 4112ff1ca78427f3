#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the SLURM tests and for trying grid-submit.
# Needs root (it installs Debian's slurmctld, slurmd, slurm-client and munge when missing).
# Everything lives in $GRID_SLURM_DIR (default /tmp/mlagents-grid-slurm); clients find it by
#     export SLURM_CONF=$GRID_SLURM_DIR/slurm.conf
# scripts/stop-slurm.sh stops it. Running this again while it is up does nothing.
set -euo pipefail
DIR=${GRID_SLURM_DIR:-/tmp/mlagents-grid-slurm}
CPUS=${GRID_SLURM_CPUS:-8}
export SLURM_CONF=$DIR/slurm.conf

fail() { echo "start-slurm: $*" >&2; exit 1; }

if [ -f "$SLURM_CONF" ] && sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "start-slurm: already up; export SLURM_CONF=$SLURM_CONF"
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root (it starts munged, slurmctld and slurmd)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || fail "no apt-get: install slurmctld, slurmd, slurm-client and munge"
    packages=(slurmctld slurmd slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${packages[@]}" >/dev/null; } \
        || fail "could not install ${packages[*]} with apt-get"
fi

# munge: one key, its own socket, run as the munge user as it insists.
mkdir -p "$DIR"/state "$DIR"/spool /run/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n >/dev/null 2>&1 || fail "munge does not answer"

NODE=$(hostname -s)
cat > "$SLURM_CONF" <<CONF
# Written by mlagents-grid's scripts/start-slurm.sh: a one-node test cluster.
ClusterName=grid
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# No cgroups here: processes are tracked by parentage, tasks are not pinned.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# The node claims more CPUs than the machine has, so that several workers share it.
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start; see $DIR/slurmctld.log"
slurmd -f "$SLURM_CONF" -N "$NODE" || fail "slurmd did not start; see $DIR/slurmd.log"
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        echo "start-slurm: up (node $NODE, $CPUS CPUs); export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
fail "the node did not become idle within 20 s; see $DIR/slurmctld.log and $DIR/slurmd.log"
