#!/usr/bin/env bash
# cluster-net.sh — the network of the cluster test (internal/cluster): hosts as network namespaces
# on one bridge, with addresses from the benchmarking range 198.18.0.0/15 only.
#
#   cluster-net.sh up PREFIX NAME=ADDRESS[,ALIAS...]...   create PREFIX-net (the bridge) and a host per NAME
#   cluster-net.sh cut PREFIX NAME | heal PREFIX NAME     take a host's link down / up (a partition)
#   cluster-net.sh down PREFIX                            kill every process in the hosts, remove it all
#   cluster-net.sh check PREFIX                           exit 1, listing them, if any of it is left
#
# Nothing is created in the machine's own network namespace: the bridge and the host ends of the
# links live in PREFIX-net, so the hosts reach each other and nothing else (their 127.0.0.1 is
# their own; the machine's services, the shared RabbitMQ among them, are out of reach). Each host
# gets /etc/netns/PREFIX-NAME/hosts, which `ip netns exec` mounts as its /etc/hosts: the names of
# every host and their aliases (the docker-compose service names) resolve to their addresses.
# PREFIX must start with "gjc-" (the cluster test's names), so down never touches anything else.
set -euo pipefail

die() { printf 'cluster-net: %s\n' "$*" >&2; exit 1; }

prefix=${2:-}
[[ $prefix =~ ^gjc-[a-z0-9]{1,8}$ ]] || die "PREFIX must be gjc- and 1-8 of [a-z0-9], got '$prefix'"
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
command -v ip >/dev/null || die "ip (iproute2) is not installed: make test-cluster installs it"

net=$prefix-net
subnet_ok() { [[ $1 =~ ^198\.1[89]\.[0-9]{1,3}\.[0-9]{1,3}$ ]]; }

# ours: the namespaces of this prefix.
ours() { ip netns list | awk '{print $1}' | grep -E "^${prefix}-" || true; }

up() {
	local hosts=("$@") spec name addr
	[ ${#hosts[@]} -gt 0 ] || die "up: no hosts"
	ip netns add "$net"
	ip -n "$net" link set lo up
	ip -n "$net" link add br0 type bridge
	ip -n "$net" link set br0 up
	local hostsfile
	hostsfile=$(mktemp)
	printf '127.0.0.1\tlocalhost\n' >"$hostsfile"
	for spec in "${hosts[@]}"; do
		name=${spec%%=*}
		addr=${spec#*=}
		local aliases=${addr#*,}
		[ "$aliases" = "$addr" ] && aliases=
		addr=${addr%%,*}
		subnet_ok "$addr" || die "up: $name: $addr is not in 198.18.0.0/15"
		[[ $name =~ ^[a-z0-9]{1,10}$ ]] || die "up: host name '$name' must be 1-10 of [a-z0-9]"
		printf '%s\t%s %s\n' "$addr" "$name" "${aliases//,/ }" >>"$hostsfile"
	done
	for spec in "${hosts[@]}"; do
		name=${spec%%=*}
		addr=${spec#*=}
		addr=${addr%%,*}
		local ns=$prefix-$name
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		# One veth pair: v-NAME on the bridge in PREFIX-net, eth0 in the host.
		ip link add "v-$name" netns "$net" type veth peer name eth0 netns "$ns"
		ip -n "$net" link set "v-$name" master br0
		ip -n "$net" link set "v-$name" up
		ip -n "$ns" addr add "$addr/24" dev eth0
		ip -n "$ns" link set eth0 up
		mkdir -p "/etc/netns/$ns"
		install -m 0644 "$hostsfile" "/etc/netns/$ns/hosts"
	done
	rm -f "$hostsfile"
}

link() { # link NAME up|down
	ip -n "$net" link set "v-$1" "$2"
}

down() {
	local ns pids pass
	# Kill what runs in the hosts; a process may fork while we look, hence the passes.
	for pass in 1 2 3 4 5; do
		pids=
		for ns in $(ours); do
			pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"
		done
		[ -z "${pids// /}" ] && break
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.2
	done
	for ns in $(ours); do
		ip netns del "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
	done
	rmdir /etc/netns 2>/dev/null || true # only when nothing else uses it
	# ip netns del returns before the kernel has torn a namespace down; wait for its links.
	local deadline=$((SECONDS + 10))
	while [ -n "$(ours)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
}

check() {
	local left=0 ns
	for ns in $(ours); do
		echo "left behind: network namespace $ns (processes: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' '))"
		left=1
	done
	for ns in /etc/netns/"$prefix"-*; do
		[ -e "$ns" ] || continue
		echo "left behind: $ns"
		left=1
	done
	# Nothing should ever be in the machine's namespace, but check it too.
	if ip -br link | awk '{print $1}' | grep -E "^(v-|${prefix})" >/dev/null; then
		echo "left behind: links in the root namespace: $(ip -br link | awk '{print $1}' | grep -E "^(v-|${prefix})" | tr '\n' ' ')"
		left=1
	fi
	return $left
}

case "${1:-}" in
up) shift 2; up "$@" ;;
cut) link "${3:?host}" down ;;
heal) link "${3:?host}" up ;;
down) down ;;
check) check ;;
*) die "usage: $0 up|cut|heal|down|check PREFIX ..." ;;
esac
