#!/usr/bin/env bash
# Starts and stops `dagster dev` (webserver, daemon, code server) in the background, cleanly.
#
#   scripts/dagster-dev.sh start    # returns once the UI answers; prints its address
#   scripts/dagster-dev.sh stop     # SIGTERM to the whole process group, SIGKILL after 60 s
#   scripts/dagster-dev.sh status
#
# Environment: DAGSTER_HOME (default ./var/dagster_home, seeded with dagster.yaml),
# YOYO_WEBSERVER_HOST (default 127.0.0.1: the UI can launch runs, so it is not exposed unless
# asked), YOYO_WEBSERVER_PORT (default 3000), YOYO_DEV_STATE (pid and log folder, default
# $DAGSTER_HOME). Why setsid: started with a bare `&` from a script, `dagster dev` ignores SIGTERM
# and SIGINT (STACK.md); in its own session it is a process group we can signal as a whole.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/var/dagster_home}
HOST=${YOYO_WEBSERVER_HOST:-127.0.0.1}
PORT=${YOYO_WEBSERVER_PORT:-3000}
STATE=${YOYO_DEV_STATE:-$DAGSTER_HOME}
PID_FILE=$STATE/dagster-dev.pid
LOG=$STATE/dagster-dev.log

running() { [ -f "$PID_FILE" ] && kill -0 -- "-$(cat "$PID_FILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "already running (process group $(cat "$PID_FILE"))"; exit 0; fi
    mkdir -p "$DAGSTER_HOME" "$STATE"
    [ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
    setsid .venv/bin/dagster dev -w workspace.yaml -h "$HOST" -p "$PORT" \
      >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
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
    for _ in $(seq 1 60); do
      if ! kill -0 -- "-$pgid" 2>/dev/null; then rm -f "$PID_FILE"; echo "stopped"; exit 0; fi
      sleep 1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$PID_FILE"
    echo "stopped (SIGKILL after 60 s)"
    ;;
  status)
    if running; then echo "running (process group $(cat "$PID_FILE"))"; else echo "not running"; exit 3; fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
