#!/usr/bin/env bash
# A test of scripts/rabbitmq.sh with a fake broker: make test stops the broker it started, and
# leaves running one that make dev started (or that ran before).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
# The fake rabbitmqctl answers status and await_startup from a state file, and stops the "node".
cat >"$tmp/bin/rabbitmqctl" <<'FAKE'
#!/bin/sh
state=$FAKE_RABBIT_STATE
case "$*" in
*status*|*await_startup*) [ -f "$state" ] ;;
*stop*) rm -f "$state" ;;
esac
FAKE
printf '#!/bin/sh\ntouch "$FAKE_RABBIT_STATE"\n' >"$tmp/bin/rabbitmq-server"
chmod +x "$tmp/bin/"*
export PATH=$tmp/bin:$PATH FAKE_RABBIT_STATE=$tmp/running RUN_DIR=$tmp/run
# Something must listen where start waits for the broker's port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port)); s.listen(); time.sleep(60)" &
listener=$!
trap 'kill $listener 2>/dev/null; rm -rf "$tmp"' EXIT
export RABBITMQ_PORT=$port
script=$root/scripts/rabbitmq.sh
fail=0
check() { if "$@"; then echo "ok   $desc"; else echo "FAIL $desc" >&2; fail=1; fi; }

start() { GPUJOBS_RABBIT_OWNER=$1 "$script" start >/dev/null 2>&1 || true; }
stop() { GPUJOBS_RABBIT_OWNER=$1 "$script" stop >/dev/null 2>&1 || true; }

desc="make test stops the broker it started"
start test; stop test; check test ! -f "$tmp/running"

desc="make test leaves make dev's broker running"
start dev; start test; stop test; check test -f "$tmp/running"

desc="make stop stops make dev's broker"
stop dev; check test ! -f "$tmp/running"

desc="a broker that ran before anything started it is left alone"
touch "$tmp/running"; start dev; start test; stop test; stop dev; check test -f "$tmp/running"
exit $fail
