#!/usr/bin/env bash
# Stops what scripts/start-slurm.sh started, by the pids it recorded, and removes its folder.
set -uo pipefail
DIR=${GRID_SLURM_DIR:-/tmp/mlagents-grid-slurm}
for daemon in slurmd slurmctld; do
    pidfile=$DIR/$daemon.pid
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
done
rm -rf "$DIR"
echo "stop-slurm: stopped"
