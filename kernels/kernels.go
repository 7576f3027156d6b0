// Package kernels holds the CPU implementations of the built-in job kinds (their params are in
// jobs/builtin), registered by kind name in CPU(): pure computation over gonum's BLAS, which the
// Makefile's build backs with OpenBLAS (-tags openblas).
//
// Kernels must not import Temporal, RabbitMQ or anything that talks to the network: the
// activities package adapts them to Temporal (heartbeats, cancellation, errors), and the GPU
// implementations live in kernels/cuda behind the cuda build tag. They check shapes and sizes
// before they allocate, and stop within one step (or one block of a long BLAS call) once their
// context is done.
package kernels

import (
	"fmt"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// CPU returns the CPU implementations of the built-in kinds. A program that adds a kind adds its
// implementation to the returned registry.
func CPU() *jobs.Impls[jobs.Impl] {
	impls := jobs.NewImpls[jobs.Impl](jobs.WorkerTypeCPU)
	for _, k := range []struct {
		kind string
		f    jobs.Impl
	}{
		{builtin.MatrixMultiplyKind, jobs.Typed(MatrixMultiply)},
		{builtin.NeuralNetworkKind, jobs.Typed(NeuralNetwork)},
		{builtin.VectorAdditionKind, jobs.Typed(VectorAddition)},
		{builtin.ImageProcessingKind, jobs.Typed(ImageProcessing)},
	} {
		if err := impls.Add(k.kind, k.f); err != nil {
			panic(fmt.Sprintf("built-in CPU implementations: %v", err)) // a constant table; a test covers it
		}
	}
	return impls
}

// cpuOutput is the part of every CPU kernel's output that says what ran.
func cpuOutput(o jobs.Output) jobs.Output {
	o.BLAS, o.Threads = BLASName, BLASThreads()
	return o
}

// Checksum sums a buffer in float64, a cheap fingerprint to compare runs and devices.
func Checksum(s []float32) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return sum
}

// MaxRelErr is max |a-b| / max(|b|, floor) over two equal-length buffers.
func MaxRelErr(a, b []float32, floor float64) float64 {
	worst := 0.0
	for i := range b {
		d := abs64(float64(a[i]) - float64(b[i]))
		den := max(abs64(float64(b[i])), floor)
		worst = max(worst, d/den)
	}
	return worst
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
