package kernels

import (
	"context"
	"time"

	"gonum.org/v1/gonum/blas"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// Sgemm computes c = a·b for row-major n×n matrices with the compiled-in BLAS.
func Sgemm(n int, a, b, c []float32) {
	blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, b, n, 0, c, n)
}

// MatrixMultiply multiplies on the CPU with the compiled-in BLAS. A large product is computed
// in tiles, so a cancellation stops it within a tile (well under a second with OpenBLAS), the
// warm-up included.
func MatrixMultiply(ctx context.Context, p *builtin.MatrixMultiply, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	n := p.Size
	a, b := p.Inputs()
	c := make([]float32, n*n)
	if err := jobs.Stopped(ctx, builtin.MatrixMultiplyKind, 0, p.Iterations); err != nil {
		return jobs.Output{}, err
	}
	// warm-up: page in c, start the BLAS threads
	if err := sgemmNN(ctx, n, n, n, a, n, b, n, c, n); err != nil {
		return jobs.Output{}, jobs.Stopped(ctx, builtin.MatrixMultiplyKind, 0, p.Iterations)
	}
	setup := time.Since(t0)

	var elapsed time.Duration
	for i := 1; i <= p.Iterations; i++ {
		start := time.Now()
		if err := sgemmNN(ctx, n, n, n, a, n, b, n, c, n); err != nil {
			return jobs.Output{}, jobs.Stopped(ctx, builtin.MatrixMultiplyKind, i-1, p.Iterations)
		}
		elapsed += time.Since(start)
		report(jobs.Progress{Iteration: i, Total: p.Iterations})
		if err := jobs.Stopped(ctx, builtin.MatrixMultiplyKind, i, p.Iterations); err != nil {
			return jobs.Output{}, err
		}
	}
	w := p.Work()
	return cpuOutput(jobs.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gflops": jobs.Rate(w.FLOPs, elapsed) / 1e9, "checksum": Checksum(c)},
	}), nil
}
