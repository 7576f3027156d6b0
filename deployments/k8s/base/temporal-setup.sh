#!/bin/sh
# setup.sh — make a Temporal cluster ready for gpujobs: the namespace exists and has the custom
# search attributes that JobWorkflow writes. Idempotent; run by the temporal-setup one-shot in
# docker-compose.yml and by the temporal-setup Job in Kubernetes (deployments/k8s keeps a copy
# that a test holds identical to this file).
# Needs the temporal CLI (the temporalio/admin-tools image) and TEMPORAL_ADDRESS. For mutual TLS
# the CLI reads TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH and
# TEMPORAL_TLS_SERVER_CA_CERT_PATH.
set -eu
: "${TEMPORAL_ADDRESS:?}"
ns=${TEMPORAL_NAMESPACE:-default}
retention=${TEMPORAL_RETENTION:-168h}
tries=${SETUP_TRIES:-60}

# The attributes and their types (workflows/types.go).
attributes="JobType:Keyword Device:Keyword Priority:Int Tenant:Keyword WorkerType:Keyword"

# retry CMD...: run CMD until it succeeds, every 5 s, at most $tries times.
retry() {
	n=1
	until "$@"; do
		[ "$n" -lt "$tries" ] || { echo "setup: gave up on: $*" >&2; return 1; }
		n=$((n + 1))
		sleep 5
	done
}

echo "setup: waiting for Temporal at $TEMPORAL_ADDRESS"
retry temporal operator cluster health >/dev/null

# ensure_namespace: the namespace exists afterwards (describe first: create fails on an existing one).
ensure_namespace() {
	temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 && return 0
	echo "setup: creating namespace $ns (retention $retention)"
	temporal operator namespace create --namespace "$ns" --retention "$retention"
}
retry ensure_namespace
echo "setup: namespace $ns"

# has NAME: the namespace lists the search attribute NAME.
has() {
	temporal operator search-attribute list --namespace "$ns" | grep -Eq "^[[:space:]]*$1[[:space:]]"
}

# create NAME TYPE: add the attribute; one that exists already (created by a concurrent run,
# or listed in a format has does not read) counts as created.
create() {
	has "$1" && return 0
	out=$(temporal operator search-attribute create --namespace "$ns" --name "$1" --type "$2" 2>&1) && return 0
	case $out in *"already exists"* | *AlreadyExists*) return 0 ;; esac
	echo "$out" >&2
	return 1
}

for a in $attributes; do
	name=${a%%:*}
	type=${a#*:}
	echo "setup: search attribute $name ($type)"
	# A new namespace takes a moment to reach every frontend, hence the retries.
	retry create "$name" "$type"
done
echo "setup: done"
