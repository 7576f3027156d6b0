package kernels

import (
	"context"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// AddVectors computes c = a + b on every core.
func AddVectors(a, b, c []float32) {
	parallelFor(len(c), func(lo, hi int) {
		a, b, c := a[lo:hi], b[lo:hi], c[lo:hi]
		for i := range c {
			c[i] = a[i] + b[i]
		}
	})
}

// VectorAddition adds on every core of the CPU.
func VectorAddition(ctx context.Context, p *builtin.VectorAddition, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	a, b := p.Inputs()
	c := make([]float32, p.Size)
	AddVectors(a, b, c) // warm-up: page in c
	setup := time.Since(t0)

	var elapsed time.Duration
	for i := 1; i <= p.Iterations; i++ {
		start := time.Now()
		AddVectors(a, b, c)
		elapsed += time.Since(start)
		report(jobs.Progress{Iteration: i, Total: p.Iterations})
		if err := jobs.Stopped(ctx, builtin.VectorAdditionKind, i, p.Iterations); err != nil {
			return jobs.Output{}, err
		}
	}
	w := p.Work()
	return jobs.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gbps": jobs.Rate(w.Bytes, elapsed) / 1e9, "checksum": Checksum(c)},
		Threads:        parallelism(),
	}, nil
}
