#!/usr/bin/env bash
# Starts and stops `dagster dev` (webserver, daemon, code server) in the background, cleanly.
#
#   scripts/dagster-dev.sh start    # returns once the UI answers; prints its address
#   scripts/dagster-dev.sh stop     # SIGTERM to the whole process group, SIGKILL after the grace
#   scripts/dagster-dev.sh status
#
# Environment: DAGSTER_HOME (default ./var/dagster_home, seeded with dagster.yaml),
# YOYO_WEBSERVER_HOST (default 127.0.0.1: the UI can launch runs, so it is not exposed unless
# asked), YOYO_WEBSERVER_PORT (default 3000), YOYO_DEV_STATE (pid and log folder, default
# $DAGSTER_HOME), YOYO_DEV_STOP_GRACE_S (seconds between SIGTERM and SIGKILL, default 60).
# Why job control (`set -m`): a script's bare `cmd &` starts `cmd` with SIGINT ignored, which
# its children inherit, and `dagster dev` stops them with SIGINT, so it never stops
# (STACK.md); as a job it gets its own process group, signalled as a whole.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/var/dagster_home}
HOST=${YOYO_WEBSERVER_HOST:-127.0.0.1}
PORT=${YOYO_WEBSERVER_PORT:-3000}
STATE=${YOYO_DEV_STATE:-$DAGSTER_HOME}
PID_FILE=$STATE/dagster-dev.pid
LOG=$STATE/dagster-dev.log
GRACE=${YOYO_DEV_STOP_GRACE_S:-60}

# Live (not zombie) members of a process group: a zombie is dead, only not yet reaped.
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {f = 1} END {exit !f}'; }
running() { [ -f "$PID_FILE" ] && group_alive "$(cat "$PID_FILE")"; }

case "${1:-}" in
  start)
    if running; then echo "already running (process group $(cat "$PID_FILE"))"; exit 0; fi
    mkdir -p "$DAGSTER_HOME" "$STATE"
    [ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
    set -m  # job control: its own process group, and SIGINT/SIGTERM not ignored (see above)
    # `dagster dev` maps SIGTERM to its SIGINT handler, so a SIGINT ignored by whoever started
    # this script (inherited, and a shell cannot undo it) would make it ignore SIGTERM too:
    # coreutils' env restores both to their defaults.
    env --default-signal=INT,TERM .venv/bin/dagster dev -w workspace.yaml -h "$HOST" -p "$PORT" \
      >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    set +m
    for _ in $(seq 1 180); do
      if curl -sf "http://$HOST:$PORT/server_info" >/dev/null 2>&1; then
        echo "dagster dev: http://$HOST:$PORT (process group $(cat "$PID_FILE"), log $LOG)"
        exit 0
      fi
      if ! running; then echo "dagster dev exited; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; fi
      sleep 1
    done
    echo "dagster dev did not answer on http://$HOST:$PORT within 180 s; see $LOG" >&2
    exit 1
    ;;
  stop)
    if ! running; then echo "not running"; rm -f "$PID_FILE"; exit 0; fi
    pgid=$(cat "$PID_FILE")
    kill -TERM -- "-$pgid"
    for _ in $(seq 1 "$GRACE"); do
      if ! group_alive "$pgid"; then rm -f "$PID_FILE"; echo "stopped"; exit 0; fi
      sleep 1
    done
    # Name what outlived the grace (in the output and the log) before killing it.
    left=$(ps -e -o pgid=,pid=,stat=,etime=,args= | awk -v g="$pgid" '$1 == g' | cut -c1-160)
    printf 'still running after %s s:\n%s\n' "$GRACE" "$left" | tee -a "$LOG" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$PID_FILE"
    echo "stopped (SIGKILL after $GRACE s)"
    ;;
  status)
    if running; then echo "running (process group $(cat "$PID_FILE"))"; else echo "not running"; exit 3; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
