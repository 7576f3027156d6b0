#!/usr/bin/env bash
# gpu-check.sh: the GPU check for a GPU test machine that has no Go toolchain and no network.
# Build here with `make build-gpu` and carry bin/ (gpucheck, cuda.test; worker-gpu is not needed)
# and scripts/ to the machine; there it needs the NVIDIA driver, and python3 with torch for the
# PyTorch half. In under 5 minutes (each step has a time limit; 295 s together) it:
#   1. runs bin/gpucheck: every job type on the GPU vs the CPU, same seeded inputs (exit != 0 on a
#      mismatch), plus the out-of-memory and kernel-fault recovery checks;
#   2. runs bin/cuda.test when present: kernelstest's conformance suite and the GPU tests;
#   3. benchmarks each job type with `gpucheck --bench --json`, then the same cases in PyTorch on
#      the same card (scripts/torch_bench.py), and prints our rate / PyTorch's per case;
# and writes the whole report as Markdown to stdout and to $OUT/gpu-check.md ($OUT defaults to
# the current directory). It exits non-zero when a check failed; a missed benchmark target is
# reported, not an error. Environment: BIN_DIR (default ./bin next to scripts/), GPUJOBS_CUBLAS
# (a libcublas to use; by default found on the loader's path, in /usr/local/cuda, or in the
# nvidia wheels of the python3 that has torch), PYTHON (default python3), REPEAT (default 3),
# TORCH_DEVICE (default cuda; cpu only to try the script out without a GPU).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN_DIR=${BIN_DIR:-$here/../bin}
PYTHON=${PYTHON:-python3}
REPEAT=${REPEAT:-3}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
out_dir=${OUT:-$PWD}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

[ -x "$BIN_DIR/gpucheck" ] || { echo "gpu-check.sh: no $BIN_DIR/gpucheck: run make build-gpu and carry bin/" >&2; exit 2; }

# cuBLAS: gpucheck searches the loader's path and /usr/local/cuda; PyTorch's pip wheels keep theirs
# in site-packages, which only python knows about.
if [ -z "${GPUJOBS_CUBLAS:-}" ] && ! ldconfig -p 2>/dev/null | grep -qE 'libcublas\.so\.1[1-3] ' \
	&& ! ls /usr/local/cuda/lib64/libcublas.so.1[1-3] /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.1[1-3] >/dev/null 2>&1; then
	found=$("$PYTHON" - <<-'EOF' 2>/dev/null
		import glob, os, site, sys
		dirs = site.getsitepackages() + [site.getusersitepackages()]
		hits = [p for d in dirs for p in glob.glob(os.path.join(d, "nvidia", "**", "libcublas.so.1[1-3]"), recursive=True)]
		print(sorted(hits, reverse=True)[0] if hits else "")
	EOF
	)
	if [ -n "$found" ]; then
		export GPUJOBS_CUBLAS=$found
		say "cuBLAS from PyTorch's wheels: $found"
	fi
fi

rc=0
say "gpucheck: GPU vs CPU"
timeout 90 "$BIN_DIR/gpucheck" 2>&1 | tee "$work/check.txt" >&2
check_rc=${PIPESTATUS[0]}
[ "$check_rc" -eq 0 ] || rc=1
gemm_line=$(grep -m1 '^SGEMM: ' "$work/check.txt" || true)
device_line=$(grep -m1 '^GPU [0-9]*: ' "$work/check.txt" || true)

tests_arg=()
if [ -x "$BIN_DIR/cuda.test" ]; then
	say "cuda.test: conformance suite and GPU tests"
	timeout 60 "$BIN_DIR/cuda.test" -test.v -test.count=1 > "$work/tests-full.txt" 2>&1
	tests_rc=$?
	grep -vE '^=== (RUN|PAUSE|CONT|NAME)' "$work/tests-full.txt" > "$work/tests.txt"
	echo "exit status $tests_rc" >> "$work/tests.txt"
	cat "$work/tests.txt" >&2
	[ "$tests_rc" -eq 0 ] || rc=1
	tests_arg=(--tests "$work/tests.txt")
fi

say "gpucheck --bench: our rates"
timeout 60 "$BIN_DIR/gpucheck" --bench --json --repeat "$REPEAT" > "$work/ours.jsonl" 2> "$work/bench.err"
bench_rc=$?
cat "$work/bench.err" >&2
[ "$bench_rc" -eq 0 ] || { rc=1; echo "gpucheck --bench failed (exit $bench_rc)" >&2; }

torch_arg=()
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)' "$TORCH_DEVICE" 2>/dev/null; then
	say "PyTorch: the same cases"
	if timeout 85 "$PYTHON" "$here/torch_bench.py" run "$work/ours.jsonl" --repeat "$REPEAT" --device "$TORCH_DEVICE" > "$work/torch.jsonl" 2> "$work/torch.err"; then
		torch_arg=("$work/torch.jsonl")
	else
		echo "torch_bench.py failed: $(tail -3 "$work/torch.err")" >&2
		[ -s "$work/torch.jsonl" ] && torch_arg=("$work/torch.jsonl")
	fi
else
	echo "python3 has no torch with CUDA: the report has our rates only" >&2
fi

driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
meta=(--meta "repeat=$REPEAT" --meta "host=$(hostname)")
[ -n "$driver" ] && meta+=(--meta "driver=$driver")
[ -n "$gemm_line" ] && meta+=(--meta "our ${gemm_line/: /=}")
[ -n "$device_line" ] && meta+=(--meta "device=${device_line#GPU [0-9]*: }")
[ "$check_rc" -eq 0 ] && meta+=(--meta "gpucheck=passed") || meta+=(--meta "gpucheck=FAILED (exit $check_rc)")

mkdir -p "$out_dir"
"$PYTHON" "$here/torch_bench.py" report "$work/ours.jsonl" "${torch_arg[@]}" --check "$work/check.txt" "${tests_arg[@]}" "${meta[@]}" \
	| tee "$out_dir/gpu-check.md"
say "report written to $out_dir/gpu-check.md"
exit $rc
