#!/bin/sh
# A trainer for stress runs: one ledger line when it starts and one when it ends, nothing else.
run=""
port=0
while [ $# -gt 0 ]; do
    case "$1" in
        --run-id) run=$2; shift ;;
        --base-port) port=$2; shift ;;
    esac
    shift
done
printf '{"event": "start", "run_id": "%s", "port": %s, "pid": %s, "time": %s}\n' \
    "$run" "$port" $$ "$(date +%s.%N)" >> "$FAKE_LEDGER"
sleep "${QUICK_SLEEP:-0.05}"
printf '{"event": "exit", "reason": "end", "run_id": "%s", "port": %s, "pid": %s, "time": %s}\n' \
    "$run" "$port" $$ "$(date +%s.%N)" >> "$FAKE_LEDGER"
