#!/usr/bin/env bash
# bench-kernels.sh — the CPU kernels on pure gonum and on OpenBLAS, one after the other in the
# same run, and OpenBLAS's rate as a multiple of gonum's.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { go test -run XXX -bench . -benchtime "${BENCHTIME:-3x}" "$@" ./kernels/ | awk '/^Benchmark/ {print $1, $3, $4}'; }
gonum=$(run)
openblas=$(run -tags openblas)
printf '%-30s %26s %26s %8s\n' benchmark gonum openblas ratio
join <(sort <<<"$gonum") <(sort <<<"$openblas") |
	awk '{printf "%-30s %10.1f %-15s %10.1f %-15s %7.2fx\n", $1, $2, $3, $4, $5, $4/$2}'
