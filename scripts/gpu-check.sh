#!/usr/bin/env bash
# gpu-check.sh: the whole GPU check, in one call, for a GPU test machine that has no Go toolchain
# and no network. Build here with `make build-gpu`; the machine needs bin/gpucheck, bin/cuda.test
# (about 10 MB together), scripts/ and kernels/cuda/ (the .cu sources and the embedded fatbins),
# the NVIDIA driver, and, for the parts that use them, python3 with torch, nvcc, cuobjdump and
# compute-sanitizer (a CUDA toolkit). Within GPU_CHECK_BUDGET seconds (280: under 5 minutes; a
# step that no longer fits is "not checked: out of time") it runs:
#   preflight      gpucheck --help (the binary starts: glibc, driver, a device), the glibc, driver
#                  and free memory, the tools, PyTorch and the cuBLAS it loads (ours then loads
#                  the same one: GPUJOBS_CUBLAS, unless set)
#   nvcc rebuild   the .cu sources with the machine's nvcc for sm_90, in the background
#   gpucheck       every job type on the GPU vs the CPU, same seeded inputs, faults last
#   cuda.test      the conformance suite and the GPU tests (cuBLAS too, through GPUJOBS_CUBLAS)
#   cuobjdump      registers, stack and local memory of the embedded and the rebuilt kernels
#   bench          gpucheck --bench: our rates (a failed case fails the step)
#   PyTorch        the same cases in PyTorch on the same card (scripts/torch_bench.py)
#   bench-rebuilt  the PTX cases again with the rebuilt kernels (GPUJOBS_KERNEL_DIR), side by side
#   memcheck, synccheck, racecheck   compute-sanitizer over the PTX conformance tests
# and writes one Markdown report to $OUT/gpu-check.md ($OUT: the current directory by default),
# also printed on stdout. Exit status: 0 every step ran and passed; 1 a step failed (or the
# report could not be written); 3 nothing failed but something was not checked (a tool or
# PyTorch missing, cuBLAS not loaded, out of time). A missed benchmark target is reported, not an
# error. Environment: BIN_DIR (./bin beside scripts/), PYTHON (python3), REPEAT (3),
# GPU_CHECK_BUDGET (280), GPUJOBS_CUBLAS (default: PyTorch's cuBLAS), KERNEL_SRC (kernels/cuda),
# and the tools' names or paths: NVCC, CUOBJDUMP, COMPUTE_SANITIZER, NVIDIA_SMI.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
BIN_DIR=${BIN_DIR:-$root/bin}
PYTHON=${PYTHON:-python3}
REPEAT=${REPEAT:-3}
BUDGET=${GPU_CHECK_BUDGET:-280}
KERNEL_SRC=${KERNEL_SRC:-$root/kernels/cuda}
NVCC=${NVCC:-nvcc}
CUOBJDUMP=${CUOBJDUMP:-cuobjdump}
COMPUTE_SANITIZER=${COMPUTE_SANITIZER:-compute-sanitizer}
NVIDIA_SMI=${NVIDIA_SMI:-nvidia-smi}
out_dir=${OUT:-$PWD}
reserve=10 # seconds kept for the report
[ -d /usr/local/cuda/bin ] && PATH=$PATH:/usr/local/cuda/bin
work=$(mktemp -d)
cleanup() {
	[ -n "${rebuild_pid:-}" ] && kill "$rebuild_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
oneline() { tr '\t\n' '  ' | sed 's/  */ /g; s/ $//' | cut -c1-400; }
# step NAME RESULT SECONDS DETAIL records a step for the report.
step() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | oneline)" >> "$work/steps.tsv"; say "$1: $2 ${4:+($(printf '%s' "$4" | oneline | cut -c1-160))}"; }
pre() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | oneline)" >> "$work/preflight.tsv"; }
left() { echo $((BUDGET - SECONDS - reserve)); }

# run NAME CAP CMD...: runs CMD with stdout in $work/NAME.out and stderr in $work/NAME.err, for at
# most CAP seconds and what is left of the budget. It sets rc (124: timed out) and secs; it
# returns 2 without running when fewer than 5 seconds are left.
run() {
	local name=$1 cap=$2
	shift 2
	local t
	t=$(left)
	[ "$t" -gt "$cap" ] && t=$cap
	if [ "$t" -lt 5 ]; then
		rc=125 secs=0
		return 2
	fi
	local start=$SECONDS
	timeout -k 5 "$t" "$@" > "$work/$name.out" 2> "$work/$name.err"
	rc=$?
	secs=$((SECONDS - start))
	[ "$rc" -eq 137 ] && rc=124
	limit=$t
	return 0
}
# verdict NAME DETAIL: records the step run just ran: ok when rc is 0, else FAIL with why.
verdict() {
	case $rc in
	0) step "$1" ok "$secs" "$2" ;;
	124) step "$1" FAIL "$secs" "timed out after ${limit} s; $2" ;;
	*) step "$1" FAIL "$secs" "exit $rc; $2" ;;
	esac
}
out_of_time() { step "$1" "not checked" - "out of time (GPU_CHECK_BUDGET=$BUDGET s)"; }
last_line() { grep -v '^\s*$' "$1" 2>/dev/null | tail -1; }
# tests RESULT WORD FILE: "N WORD (names)" for the top-level tests of the go test -v output FILE
# with that RESULT (SKIP, FAIL).
tests() {
	local names
	names=$(grep "^--- $1: " "$3" | sed "s/^--- $1: //; s/ (.*//" | paste -sd, - | sed 's/,/, /g')
	printf '%s %s%s' "$(grep -c "^--- $1: " "$3")" "$2" "${names:+ ($names)}"
}

[ -x "$BIN_DIR/gpucheck" ] || { echo "gpu-check.sh: no $BIN_DIR/gpucheck: run make build-gpu and carry bin/" >&2; exit 1; }
echo "$REPEAT" > "$work/repeat"
: > "$work/steps.tsv"

# --- preflight -------------------------------------------------------------------------------
start=$SECONDS
"$BIN_DIR/gpucheck" --help > "$work/help.out" 2>&1
help_rc=$?
glibc=$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')
needs=$(grep -aoE 'GLIBC_2\.[0-9]+' "$BIN_DIR/gpucheck" "$BIN_DIR/cuda.test" 2>/dev/null | sed 's/.*://' | sort -uV | tail -1)
pre "gpucheck --help" "exit $help_rc$( [ $help_rc -ne 0 ] && echo ": $(head -3 "$work/help.out")")"
pre "glibc" "${glibc:-unknown} (the binaries need ${needs:-?})"
if command -v "$NVIDIA_SMI" >/dev/null; then
	smi=$("$NVIDIA_SMI" --query-gpu=index,name,driver_version,memory.total,memory.used,memory.free --format=csv,noheader 2>&1 | head -8)
	pre "nvidia-smi" "$smi"
	driver=$(printf '%s\n' "$smi" | head -1 | cut -d, -f3 | tr -d ' ')
else
	pre "nvidia-smi" "not found"
fi
nvcc_version=""
if command -v "$NVCC" >/dev/null; then
	nvcc_version=nvcc\ $("$NVCC" --version 2>&1 | grep -oE 'release [0-9.]+, V[0-9.]+' | head -1)
	pre "nvcc" "$nvcc_version ($(command -v "$NVCC"))"
else
	pre "nvcc" "not found"
fi
for tool in "$CUOBJDUMP" "$COMPUTE_SANITIZER"; do
	pre "$(basename "$tool")" "$(command -v "$tool" || echo "not found")"
done
torch_ok=0 torch_why=""
if timeout 90 "$PYTHON" "$here/torch_bench.py" info > "$work/torch-info.json" 2> "$work/torch-info.err"; then
	torch_ok=1
	pre "PyTorch" "$(cat "$work/torch-info.json")"
	torch_cublas=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("cublas_path", ""))' "$work/torch-info.json" 2>/dev/null)
	torch_cublas_version=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("cublas_version", ""))' "$work/torch-info.json" 2>/dev/null)
	grep -q '"cuda_available": true' "$work/torch-info.json" || { torch_ok=0; torch_why="PyTorch sees no CUDA device"; }
else
	rm -f "$work/torch-info.json"
	torch_why="$PYTHON cannot run torch_bench.py info: $(last_line "$work/torch-info.err")"
	pre "PyTorch" "$torch_why"
fi
if [ -z "${GPUJOBS_CUBLAS:-}" ] && [ -n "${torch_cublas:-}" ]; then
	export GPUJOBS_CUBLAS=$torch_cublas
	pre "cuBLAS" "PyTorch's, $torch_cublas (cuBLAS $torch_cublas_version): ours is pointed at it (GPUJOBS_CUBLAS)"
elif [ -n "${GPUJOBS_CUBLAS:-}" ]; then
	pre "cuBLAS" "GPUJOBS_CUBLAS=$GPUJOBS_CUBLAS as given; PyTorch's: ${torch_cublas:-unknown} ${torch_cublas_version:+(cuBLAS $torch_cublas_version)}"
else
	pre "cuBLAS" "PyTorch's not known; ours searches libcublas.so.13/.12/.11"
fi
gpu_ok=1
if [ $help_rc -ne 0 ]; then
	gpu_ok=0
	step preflight FAIL $((SECONDS - start)) "gpucheck --help: $(head -1 "$work/help.out")"
else
	step preflight ok $((SECONDS - start)) "glibc ${glibc:-?} (needs ${needs:-?}), driver ${driver:-?}, ${nvcc_version:-no nvcc}, $([ $torch_ok = 1 ] && echo "PyTorch ok" || echo "no PyTorch")"
fi

# --- nvcc rebuild, in the background while gpucheck runs ------------------------------------
rebuild_pid=""
mkdir -p "$work/kernels" "$work/res-embedded" "$work/res-rebuilt"
if [ -n "$nvcc_version" ] && ls "$KERNEL_SRC"/*.cu >/dev/null 2>&1; then
	(
		cd "$KERNEL_SRC" || exit 1
		ms() { echo $(($(date +%s%N) / 1000000)); }
		t0=$(ms)
		pids=()
		for src in *.cu; do
			(
				t=$(ms)
				"$NVCC" -std=c++17 -O3 -Xptxas -v -fatbin -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
					"$src" -o "$work/kernels/${src%.cu}.fatbin" > "$work/nvcc-${src%.cu}.log" 2>&1
				rc=$?
				echo "${src%.cu} $(($(ms) - t)) ms" >> "$work/nvcc-times"
				exit $rc
			) &
			pids+=($!)
		done
		rc=0
		for p in "${pids[@]}"; do wait "$p" || rc=1; done
		cat "$work"/nvcc-*.log > "$work/nvcc.log"
		echo $(($(ms) - t0)) > "$work/nvcc-wall-ms"
		exit $rc
	) &
	rebuild_pid=$!
	rebuild_start=$SECONDS
fi

# --- gpucheck, cuda.test ---------------------------------------------------------------------
gpu_steps=(gpucheck cuda.test)
if [ $gpu_ok = 1 ]; then
	if run gpucheck 150 "$BIN_DIR/gpucheck"; then
		verdict gpucheck "$(grep -E 'checks (passed|failed)' "$work/gpucheck.out" | tail -1); $(grep -m1 '^SGEMM: ' "$work/gpucheck.err")"
	else out_of_time gpucheck; fi
	if [ -x "$BIN_DIR/cuda.test" ]; then
		if run cuda.test 120 "$BIN_DIR/cuda.test" -test.v -test.count=1; then
			t="$work/cuda.test.out"
			verdict cuda.test "$(grep -c '^--- PASS' "$t") passed, $(tests SKIP skipped "$t"), $(tests FAIL failed "$t")"
		else out_of_time cuda.test; fi
	else
		step cuda.test "not checked" - "no $BIN_DIR/cuda.test"
	fi
else
	for s in "${gpu_steps[@]}"; do step "$s" "not checked" - "preflight failed"; done
fi

# --- the rebuild's result, cuobjdump ---------------------------------------------------------
rebuilt=0
if [ -n "$rebuild_pid" ]; then
	wait_left=$(left)
	while kill -0 "$rebuild_pid" 2>/dev/null && [ "$(left)" -gt 0 ] && [ $((SECONDS - rebuild_start)) -lt 180 ]; do sleep 1; done
	if kill -0 "$rebuild_pid" 2>/dev/null; then
		kill "$rebuild_pid" 2>/dev/null
		step "nvcc rebuild" FAIL $((SECONDS - rebuild_start)) "still compiling after $((SECONDS - rebuild_start)) s (budget left ${wait_left} s)"
	elif wait "$rebuild_pid"; then
		rebuilt=1
		n=$(ls "$work"/kernels/*.fatbin | wc -l)
		wall=$(cat "$work/nvcc-wall-ms")
		step "nvcc rebuild" ok "$((wall / 1000))" "$n modules for sm_90 with $nvcc_version, in parallel (while gpucheck ran): $wall ms wall; $(sort "$work/nvcc-times" | paste -sd, - | sed 's/,/, /g')"
	else
		step "nvcc rebuild" FAIL $((SECONDS - rebuild_start)) "$(grep -m3 -iE 'error' "$work"/nvcc-*.log)"
	fi
	rebuild_pid=""
else
	step "nvcc rebuild" "not checked" - "${nvcc_version:+no .cu sources in $KERNEL_SRC}${nvcc_version:-no $NVCC on PATH}"
fi
if command -v "$CUOBJDUMP" >/dev/null; then
	start=$SECONDS bad=0
	for f in "$KERNEL_SRC"/ptx/*.fatbin; do
		"$CUOBJDUMP" --dump-resource-usage "$f" > "$work/res-embedded/$(basename "$f" .fatbin).txt" 2>&1 || bad=1
	done
	if [ $rebuilt = 1 ]; then
		for f in "$work"/kernels/*.fatbin; do
			"$CUOBJDUMP" --dump-resource-usage "$f" > "$work/res-rebuilt/$(basename "$f" .fatbin).txt" 2>&1 || bad=1
		done
	fi
	kernels=$(cat "$work"/res-embedded/*.txt 2>/dev/null | grep -c 'REG:')
	stack=$(cat "$work"/res-embedded/*.txt 2>/dev/null | grep -cE 'STACK:[1-9]|LOCAL:[1-9]')
	if [ $bad = 0 ] && [ "$kernels" -gt 0 ]; then
		step cuobjdump ok $((SECONDS - start)) "$kernels embedded kernels, $stack with a stack frame or local memory (see the table)"
	else
		step cuobjdump FAIL $((SECONDS - start)) "$(cat "$work"/res-*/*.txt | grep -m2 -i error)"
	fi
else
	step cuobjdump "not checked" - "no $CUOBJDUMP on PATH"
fi

# --- benchmarks ------------------------------------------------------------------------------
if [ $gpu_ok = 1 ]; then
	if run bench 120 "$BIN_DIR/gpucheck" --bench --json --repeat "$REPEAT"; then
		cp "$work/bench.out" "$work/ours.jsonl"
		skipped=$(grep -c '"skipped"' "$work/ours.jsonl")
		verdict bench "$(grep -c '"case"' "$work/ours.jsonl") cases, $(grep -c '"error"' "$work/ours.jsonl") failed$( [ "$skipped" -gt 0 ] && echo ", $skipped skipped: $(grep -m1 -o '"skipped": *"[^"]*"' "$work/ours.jsonl" | cut -d'"' -f4)"); $(last_line "$work/bench.err")"
	else out_of_time bench; fi
else
	step bench "not checked" - "preflight failed"
fi
if [ $torch_ok = 1 ] && [ -s "$work/ours.jsonl" ]; then
	if run PyTorch 150 "$PYTHON" "$here/torch_bench.py" run "$work/ours.jsonl" --repeat "$REPEAT" --device cuda; then
		cp "$work/PyTorch.out" "$work/torch.jsonl"
		verdict PyTorch "$(grep -c '"rate"' "$work/torch.jsonl") cases measured, $(grep -c '"error"' "$work/torch.jsonl") failed$( [ $rc -ne 0 ] && echo ": $(last_line "$work/PyTorch.err")")"
	else out_of_time PyTorch; fi
elif [ $torch_ok = 1 ]; then
	step PyTorch "not checked" - "no benchmark case of ours to compare"
else
	step PyTorch "not checked" - "$torch_why"
fi
if [ $rebuilt = 1 ] && [ $gpu_ok = 1 ]; then
	if GPUJOBS_KERNEL_DIR=$work/kernels run bench-rebuilt 90 "$BIN_DIR/gpucheck" --bench --json --impl ptx --repeat "$REPEAT"; then
		cp "$work/bench-rebuilt.out" "$work/rebuilt.jsonl"
		if [ $rc -eq 0 ] && ! grep -q "\"kernels\": *\"$work/kernels" "$work/rebuilt.jsonl"; then
			rc=1
			verdict bench-rebuilt "the cases did not run the kernels of $work/kernels: $(grep -m1 -o '"kernels": *"[^"]*"' "$work/rebuilt.jsonl")"
		else
			verdict bench-rebuilt "$(grep -c '"case"' "$work/rebuilt.jsonl") PTX cases with GPUJOBS_KERNEL_DIR; $(last_line "$work/bench-rebuilt.err")"
		fi
	else out_of_time bench-rebuilt; fi
else
	step bench-rebuilt "not checked" - "$([ $gpu_ok = 1 ] && echo "no rebuilt kernels" || echo "preflight failed")"
fi

# --- compute-sanitizer -----------------------------------------------------------------------
for tool in memcheck synccheck racecheck; do
	if [ $gpu_ok = 0 ]; then
		step "$tool" "not checked" - "preflight failed"
	elif ! command -v "$COMPUTE_SANITIZER" >/dev/null; then
		step "$tool" "not checked" - "no $COMPUTE_SANITIZER on PATH"
	elif [ ! -x "$BIN_DIR/cuda.test" ]; then
		step "$tool" "not checked" - "no $BIN_DIR/cuda.test"
	elif run "$tool" 90 "$COMPUTE_SANITIZER" --tool "$tool" --error-exitcode 9 --print-limit 20 \
		"$BIN_DIR/cuda.test" -test.run '^TestConformancePTX$' -test.count=1 -test.v; then
		cat "$work/$tool.err" >> "$work/$tool.out"
		summary=$(grep -E 'SUMMARY' "$work/$tool.out" | tail -1 | sed 's/^=* *//')
		if [ $rc -eq 0 ] && ! grep -q '^--- PASS: TestConformancePTX' "$work/$tool.out"; then
			rc=1 # the sanitizer ran nothing that passed
		fi
		verdict "$tool" "${summary:-no summary line}"
	else out_of_time "$tool"; fi
done

# --- report ----------------------------------------------------------------------------------
mkdir -p "$out_dir"
report=$out_dir/gpu-check.md
meta=(--meta "host=$(hostname)")
if "$PYTHON" "$here/gpu_check_report.py" --work "$work" --out "$report" "${meta[@]}" 2> "$work/report.err" && [ -s "$work/result" ]; then
	result=$(cat "$work/result")
else
	result=FAIL
	{
		echo "# GPU check: report step failed"
		echo
		echo "**Result: FAIL** — gpu_check_report.py failed: $(last_line "$work/report.err")."
		echo
		echo "| step | result | seconds | detail |"
		echo "| --- | --- | ---: | --- |"
		sed 's/|/\\|/g; s/\t/ | /g; s/^/| /; s/$/ |/' "$work/steps.tsv"
	} > "$report"
fi
cat "$report"
say "report written to $report: $result"
case $result in
PASS) exit 0 ;;
INCOMPLETE) exit 3 ;;
*) exit 1 ;;
esac
