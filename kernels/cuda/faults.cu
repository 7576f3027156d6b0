// faults.cu: a kernel that fails on purpose, for gpucheck and the GPU tests (faults.go), so that
// what the runner does after a device-side error is shown on a real GPU.
#include <cassert>

// fault_assert trips a device-side assert when v != 0: CUDA_ERROR_ASSERT, after which the
// context "cannot be used anymore, and must be destroyed" (the runner resets it).
extern "C" __global__ void fault_assert(int v) { assert(v == 0); }
