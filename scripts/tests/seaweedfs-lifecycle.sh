#!/usr/bin/env bash
# A test of scripts/seaweedfs.sh with the real server, in a private run directory: start is
# idempotent, the gateway refuses anonymous requests, and stop stops only the instance start
# started (another one, such as the instance make test runs the S3 tests against, keeps serving).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
script=$root/scripts/seaweedfs.sh
tmp=$(mktemp -d)
export RUN_DIR=$tmp/run
cleanup() {
	SEAWEEDFS_NAME=life-a "$script" stop >/dev/null 2>&1 || true
	SEAWEEDFS_NAME=life-b "$script" stop >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() { if "$@"; then echo "ok   $desc"; else echo "FAIL $desc" >&2; fail=1; fi; }
endpoint() { sed -n 's/^export GPUJOBS_S3_ENDPOINT=//p' <(SEAWEEDFS_NAME=$1 "$script" env); }
code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@"; }

SEAWEEDFS_NAME=life-a "$script" start 2>/dev/null
a=$(endpoint life-a)
pid_a=$(cat "$RUN_DIR/life-a.pid")

desc="a second start reuses the running instance"
SEAWEEDFS_NAME=life-a "$script" start 2>/dev/null
check test "$(endpoint life-a)" = "$a" -a "$(cat "$RUN_DIR/life-a.pid")" = "$pid_a"

desc="an anonymous request is refused (403)"
check test "$(code -X PUT "$a/anonymous-bucket")" = 403

SEAWEEDFS_NAME=life-b "$script" start 2>/dev/null
b=$(endpoint life-b)
desc="two instances use different ports"
check test "$a" != "$b"

desc="stop stops its own instance: the process, the port and the data are gone"
SEAWEEDFS_NAME=life-b "$script" stop 2>/dev/null
check test "$(code "$b/" || true)" = 000 -a ! -d "$RUN_DIR/life-b" -a ! -f "$RUN_DIR/life-b.pid"

desc="and leaves the other instance serving"
check test "$(code "$a/")" = 403

desc="stopping what is not running is a no-op"
check env SEAWEEDFS_NAME=life-b "$script" stop

desc="env fails with a clear message when the instance is not running"
out=$(SEAWEEDFS_NAME=life-b "$script" env 2>&1 || true)
check grep -q "is not running" <<<"$out"

SEAWEEDFS_NAME=life-a "$script" stop 2>/dev/null
desc="after stop no SeaweedFS process of the test is left"
# (exited: no /proc entry, or a zombie until whoever inherited it reaps it)
check bash -c "! grep -qv '^[0-9]* (.*) Z' /proc/$pid_a/stat 2>/dev/null"
exit $fail
