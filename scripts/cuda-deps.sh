#!/usr/bin/env bash
# cuda-deps.sh [--toolkit] installs what building the GPU code needs, and nothing when it is there:
#   always     nvidia-cuda-dev: cuda.h and the driver stub libcuda.so (CUDA 11.8 in bookworm), so
#              gorgonia.org/cu's cgo compiles and links; the real libcuda.so.1 comes with the driver
#              on a GPU node. patchelf, to drop libcuda.so.1 from the GPU binaries' DT_NEEDED
#              (they dlopen it themselves, see kernels/cuda/probe).
#   --toolkit  nvidia-cuda-toolkit too (nvcc 11.8, with gcc-11 as its host compiler), only to
#              regenerate the committed PTX/fatbin (make kernels). It also installs libcuda1, the
#              driver's user-space library, which on a machine without a GPU reports "no device".
# The CUDA packages live in Debian's non-free component, which this enables in the deb822 sources
# (bookworm's /etc/apt/sources.list.d/debian.sources) when it is not.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pkgs=(nvidia-cuda-dev patchelf)
[ "${1:-}" = --toolkit ] && pkgs+=(nvidia-cuda-toolkit)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=0
for p in "${pkgs[@]}"; do installed "$p" || missing=1; done
[ $missing = 0 ] && exit 0

src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ] && ! grep -qE '^Components:.*non-free( |$)' "$src"; then
	log "enabling Debian's contrib and non-free components in $src (CUDA is non-free)"
	as_root sed -i -E 's/^(Components:[[:space:]]*main)[[:space:]]*$/\1 contrib non-free non-free-firmware/' "$src"
elif [ ! -f "$src" ] && [ -f /etc/apt/sources.list ] && ! grep -qE '^deb .* non-free( |$)' /etc/apt/sources.list; then
	log "enabling Debian's contrib and non-free components in /etc/apt/sources.list (CUDA is non-free)"
	as_root sed -i -E 's/^(deb[[:space:]].*[[:space:]]main)[[:space:]]*$/\1 contrib non-free non-free-firmware/' /etc/apt/sources.list
fi
apt_install "${pkgs[@]}"
