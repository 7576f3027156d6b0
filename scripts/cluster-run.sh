#!/usr/bin/env bash
# cluster-run.sh GO-TEST-FLAGS... — run internal/cluster's tests or benchmark (make test-cluster,
# make bench) on hosts of their own: network namespaces named gjc-<random>, which the test creates,
# tears down and checks itself. The trap here is the net under it (a go test timeout kills the
# test before its cleanup): it removes whatever of this run's hosts is left and fails if it can't.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "the cluster test needs root: its hosts are network namespaces"
prefix=gjc-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$RUN_DIR"

cleanup() {
	"$ROOT/scripts/cluster-net.sh" down "$prefix" >/dev/null 2>&1 || true
	rm -rf "${TMPDIR:-/tmp}/$prefix"
	"$ROOT/scripts/cluster-net.sh" check "$prefix" || die "cluster $prefix: the above is left behind"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# The SQL schema of the Temporal server that bin/devserver is built from (the admin-tools
# image's /etc/temporal/schema).
schema=$(cd "$ROOT/devserver" && go list -m -f '{{.Dir}}' go.temporal.io/server)/schema
cd "$ROOT"
GPUJOBS_CLUSTER=1 GPUJOBS_CLUSTER_PREFIX=$prefix GPUJOBS_BIN=$BIN_DIR GPUJOBS_TEMPORAL_SCHEMA=$schema \
	GPUJOBS_CLUSTER_LOGS=$RUN_DIR/cluster-logs \
	go test -count=1 -v "$@" ./internal/cluster/
