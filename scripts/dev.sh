#!/usr/bin/env bash
# dev.sh start|stop|status — the local stack: the Temporal dev server (with its Web UI), a
# scheduler worker, a CPU worker, the RabbitMQ job bridge and the monitor, in the background.
# Logs and pids in run/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
UI_PORT=${UI_PORT:-8233}
export TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}
# The workers and a starter run from the checkout share one artifact store.
export GPUJOBS_ARTIFACTS=${GPUJOBS_ARTIFACTS:-file://$ROOT/run/artifacts}
MONITOR_ADDR=${MONITOR_ADDR:-127.0.0.1:8000}
# The scheduler's health address; the monitor's /api/queue asks it where queued jobs stand.
SCHEDULER_HEALTH=${SCHEDULER_HEALTH:-127.0.0.1:8091}
SERVICES=(devserver scheduler cpu-worker bridge monitor)

# spawn NAME CMD...: run CMD in its own session, detached, unless NAME already runs.
spawn() {
	local name=$1
	shift
	if pid_alive "$name"; then
		log "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"
		return
	fi
	setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN_DIR/$name.pid"
	log "started $name (pid $!, log run/$name.log)"
}

# wait_log NAME PATTERN SECONDS: wait for PATTERN in NAME's log, failing if NAME dies.
wait_log() {
	local deadline=$((SECONDS + $3))
	until grep -q "$2" "$RUN_DIR/$1.log" 2>/dev/null; do
		pid_alive "$1" || { tail -20 "$RUN_DIR/$1.log" >&2; die "$1 exited: see run/$1.log"; }
		[ $SECONDS -lt $deadline ] || die "$1 not ready after $3 s: see run/$1.log"
		sleep 0.2
	done
}

start() {
	mkdir -p "$RUN_DIR" "$ROOT/data" "$ROOT/results"
	if ! pid_alive devserver && wait_tcp 127.0.0.1 "$TEMPORAL_PORT" 0; then
		log "something already listens on $TEMPORAL_PORT: using it as the Temporal server"
	else
		spawn devserver "$BIN_DIR/devserver" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
			--ui-port "$UI_PORT" --db-filename "$ROOT/data/temporal.db"
		wait_tcp 127.0.0.1 "$TEMPORAL_PORT" 60 || die "Temporal dev server not up: see run/devserver.log"
	fi
	spawn scheduler "$BIN_DIR/worker" --role scheduler --id scheduler-1 --estimates-file "$ROOT/data/estimates.json" \
		--health-addr "$SCHEDULER_HEALTH"
	# The dev stack runs command jobs of python3 and sh, so the examples in examples/commands work at once.
	spawn cpu-worker "$BIN_DIR/worker" --role cpu --id "cpu-$(hostname)" --allow-commands python3,sh
	spawn bridge "$BIN_DIR/worker" --role bridge --id bridge-1
	spawn monitor "$BIN_DIR/monitor" serve --addr "$MONITOR_ADDR" --store "$ROOT/results/results.jsonl" \
		--scheduler-url "http://$SCHEDULER_HEALTH"
	wait_log scheduler "worker polling" 30
	wait_log cpu-worker "worker polling" 30
	wait_log bridge "consuming jobs" 30
	wait_log monitor "consuming results" 30
	log "dev stack up: Temporal $TEMPORAL_ADDRESS, Web UI http://127.0.0.1:$UI_PORT, monitor http://$MONITOR_ADDR, logs in run/"
}

stop() {
	local pids=() name
	for name in "${SERVICES[@]}"; do
		pid_alive "$name" && pids+=("$(cat "$RUN_DIR/$name.pid")") && kill -TERM "$(cat "$RUN_DIR/$name.pid")"
	done
	local deadline=$((SECONDS + 40))
	for name in "${SERVICES[@]}"; do
		while pid_alive "$name" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
		pid_alive "$name" && kill -KILL "$(cat "$RUN_DIR/$name.pid")"
		rm -f "$RUN_DIR/$name.pid"
	done
	[ ${#pids[@]} -eq 0 ] || log "dev stack stopped"
}

status() {
	for name in "${SERVICES[@]}"; do
		if pid_alive "$name"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"; else echo "$name: stopped"; fi
	done
}

case "${1:-}" in
start | stop | status) "$1" ;;
*) die "usage: $0 start|stop|status" ;;
esac
