#!/usr/bin/env bash
# demo.sh — the seed's four example jobs, each on the CPU and with the GPU preferred, through the
# running dev stack; prints the results, the Web UI and where the logs are.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

starter=$BIN_DIR/starter
ui=${TEMPORAL_UI_URL:-http://127.0.0.1:8233}
jobs=(
	'{"job_type": "matrix_multiply", "size": 1000, "iterations": 10}'
	'{"job_type": "neural_network", "epochs": 5, "batch_size": 64, "input_size": 784, "hidden_size": 256, "output_size": 10}'
	'{"job_type": "vector_addition", "size": 10000000, "iterations": 100}'
	'{"job_type": "image_processing", "batch_size": 32, "image_size": 224, "iterations": 50}'
)
ids=()
for device in cpu gpu; do
	for j in "${jobs[@]}"; do
		line=$("$starter" submit --params "$j" --device "$device")
		echo "$line"
		ids+=("$(awk '{print $2}' <<<"$line")")
	done
done
log "waiting for ${#ids[@]} jobs (watch them at $ui/namespaces/default/workflows)"
"$starter" result "${ids[@]}"

# The monitor stores each result within milliseconds of its publication; wait for all of them,
# then print its report (totals, time per job type and worker, speedup, fallbacks).
store=$ROOT/results/results.jsonl
deadline=$((SECONDS + 30))
for id in "${ids[@]}"; do
	until grep -q "\"job_id\":\"$id\"" "$store" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || die "the monitor has not stored $id: see run/monitor.log"
		sleep 0.2
	done
done
"$BIN_DIR/monitor" report --store "$store" --out "$ROOT/results" >/dev/null
echo
sed -n '/^## Totals/,/^!\[/p' "$ROOT/results/report.md" | grep -v '^!\['
echo "Full report: results/report.md (with charts and CSV in results/)"
echo
echo "Temporal Web UI:  $ui/namespaces/default/workflows"
echo "Monitor:          http://${MONITOR_ADDR:-127.0.0.1:8000}/ (dashboard; API under /api/)"
echo "Logs:             run/*.log (devserver, scheduler, cpu-worker, monitor)"
echo "Results stream:   bin/monitor tail    Report: bin/monitor report (writes results/report.md)"
echo "Stop the stack:   make stop"
