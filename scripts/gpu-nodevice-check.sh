#!/usr/bin/env bash
# gpu-nodevice-check.sh BIN_DIR: on a machine without a GPU (or without the NVIDIA driver), the GPU
# binaries must stop with the one line that says so (exit 1), and the cuda-tagged test binary must
# skip (exit 0), not crash. On a machine with a GPU the binaries start normally and there is
# nothing to check.
set -uo pipefail
bin=${1:?usage: gpu-nodevice-check.sh BIN_DIR}
want="no CUDA device found: start a CPU worker instead"
fail=0
for prog in worker-gpu gpucheck; do
	# --help needs no GPU: it prints the usage, and says why the program would not start here.
	help=$("$bin/$prog" --help 2>&1); rc=$?
	if [ $rc -eq 0 ] && [[ $help != *"On this machine: $want"* ]]; then
		printf 'skip %s: a GPU is present, it started\n' "$prog"
		continue
	elif [ $rc -ne 0 ] || [[ $help != *"Usage:"* ]]; then
		printf 'FAIL %s --help without a GPU: exit %d, output:\n%s\n' "$prog" $rc "$help" >&2
		fail=1
	else
		printf 'ok   %s --help without a GPU\n' "$prog"
	fi
	out=$("$bin/$prog" --log-level warn 2>&1); rc=$?
	if [ $rc -ne 1 ] || [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ] || [[ $out != "$prog: $want"* ]]; then
		printf 'FAIL %s without a GPU: exit %d, output:\n%s\n' "$prog" $rc "$out" >&2
		fail=1
	else
		printf 'ok   %s without a GPU: %s\n' "$prog" "$out"
	fi
done
out=$("$bin/cuda.test" -test.run '^$' 2>&1); rc=$?
if [ $rc -ne 0 ]; then
	printf 'FAIL cuda.test: exit %d, output:\n%s\n' $rc "$out" >&2
	fail=1
else
	printf 'ok   cuda.test: %s\n' "$(printf '%s' "$out" | head -1)"
fi
exit $fail
