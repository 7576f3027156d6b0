//go:build cuda

// Command gpucheck checks the GPU kernels against the CPU ones on this machine's GPU, and
// benchmarks them for scripts/gpu-check.sh.
//
// Check mode (the default) runs every job type at a small and at its default size on the GPU and
// on the CPU with the same seeded inputs, compares the outputs within stated tolerances, provokes
// a CUDA out-of-memory error and a kernel fault to show that the runner keeps serving, and prints a
// table; it exits non-zero on any mismatch. Bench mode (--bench) runs the benchmark cases and
// prints their rates, as JSON with --json for scripts/torch_bench.py to compare with PyTorch.
package main

import "github.com/gpujobs/gpujobs/internal/cli"

func main() { cli.Main("gpucheck", newCommand()) }
