#!/usr/bin/env bash
# rabbitmq.sh start|stop|status — a local RabbitMQ for development and tests.
# start is idempotent; stop only stops a broker that start started for the same owner
# (GPUJOBS_RABBIT_OWNER: dev by default, test for make test, bench for make bench), so a broker the
# machine already ran, or that make dev's stack uses while make test runs, is left alone.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

owner=${GPUJOBS_RABBIT_OWNER:-dev}
marker=$RUN_DIR/rabbitmq.started.$owner

running() { rabbitmqctl -q status >/dev/null 2>&1; }

case "${1:-}" in
start)
	apt_install rabbitmq-server
	if running; then
		log "RabbitMQ already running"
		exit 0
	fi
	mkdir -p "$RUN_DIR"
	log "starting RabbitMQ"
	as_root rabbitmq-server -detached >/dev/null 2>&1 || true
	# -detached returns before the Erlang node has registered; await_startup fails until it has.
	deadline=$((SECONDS + 120))
	until as_root rabbitmqctl -q await_startup >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "RabbitMQ did not start within 120 s: see /var/log/rabbitmq/"
		sleep 1
	done
	touch "$marker"
	port=${RABBITMQ_PORT:-5672}
	wait_tcp 127.0.0.1 "$port" 30 || die "RabbitMQ is not listening on $port"
	;;
stop)
	if [ -f "$marker" ]; then
		log "stopping RabbitMQ (started by make ${owner})"
		as_root rabbitmqctl -q stop >/dev/null 2>&1 || true
		rm -f "$marker"
	fi
	;;
status)
	running && echo "RabbitMQ running" || { echo "RabbitMQ not running"; exit 1; }
	;;
*)
	die "usage: $0 start|stop|status"
	;;
esac
