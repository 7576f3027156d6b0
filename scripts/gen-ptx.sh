#!/usr/bin/env bash
# gen-ptx.sh regenerates kernels/cuda/ptx from the .cu sources beside it (make kernels):
#   NAME.ptx     PTX for compute_80: any driver that knows PTX ISA 7.8 JIT-compiles it for its GPU
#                (Ampere, Hopper and later).
#   NAME.fatbin  sm_90 SASS (H100, no JIT at start-up) plus the same compute_80 PTX.
#   sources.sha256  the hashes of the sources they were built from; a test fails when a source
#                changed and this script was not run.
# nvcc 11.8 is Debian's (scripts/cuda-deps.sh --toolkit). It needs a host compiler even for -ptx
# (it preprocesses with it), and it refuses gcc 12: Debian's nvcc wrapper already picks gcc-11,
# which nvidia-cuda-toolkit depends on, so no -ccbin is needed. NVCC_CCBIN overrides it.
set -euo pipefail
cd "$(dirname "$0")/../kernels/cuda"
NVCC=${NVCC:-nvcc}
flags=(-std=c++17 -O3)
[ -n "${NVCC_CCBIN:-}" ] && flags+=(-ccbin "$NVCC_CCBIN")
command -v "$NVCC" >/dev/null || { echo "nvcc not found: run scripts/cuda-deps.sh --toolkit" >&2; exit 1; }
"$NVCC" --version | tail -2 | head -1 >&2
for src in *.cu; do
	name=${src%.cu}
	"$NVCC" "${flags[@]}" -ptx -arch=compute_80 "$src" -o "ptx/$name.ptx"
	"$NVCC" "${flags[@]}" -fatbin -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
		"$src" -o "ptx/$name.fatbin"
	echo "ptx/$name.ptx ptx/$name.fatbin" >&2
done
sha256sum ./*.cu ./*.cuh | sed 's# \./# #' > ptx/sources.sha256
