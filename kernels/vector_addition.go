package kernels

import (
	"context"
	"time"
)

// VectorAddition adds two float32 vectors Iterations times: a memory-bandwidth benchmark, where a
// GPU's advantage is eaten by the host↔device copies unless the data stays on the device.
type VectorAddition struct {
	Size       int    `json:"size"`
	Iterations int    `json:"iterations"`
	Seed       uint64 `json:"seed"`
}

const VectorAdditionKind = "vector_addition"

func vectorAdditionSpec() Spec {
	return Spec{
		Kind:    VectorAdditionKind,
		Summary: "c = a + b over float32 vectors, reports GB/s",
		New:     func() Params { return &VectorAddition{Size: 10_000_000, Iterations: 100, Seed: 42} },
	}
}

func (*VectorAddition) Kind() string { return VectorAdditionKind }

func (p *VectorAddition) Validate() error {
	if err := checkRange(VectorAdditionKind, "size", p.Size, 1, 1<<30); err != nil {
		return err
	}
	if err := checkRange(VectorAdditionKind, "iterations", p.Iterations, 1, 1000000); err != nil {
		return err
	}
	return checkMem(VectorAdditionKind, p.Work())
}

func (p *VectorAddition) Work() Work {
	n := int64(p.Size)
	return Work{
		Bytes:         3 * 4 * float64(n) * float64(p.Iterations),
		FLOPs:         float64(n) * float64(p.Iterations),
		MemBytes:      3 * 4 * n,
		TransferBytes: 3 * 4 * n,
		Steps:         p.Iterations,
	}
}

// Inputs returns the two vectors the job adds.
func (p *VectorAddition) Inputs() (a, b []float32) {
	return UniformSlice(p.Seed, 1, p.Size), UniformSlice(p.Seed, 2, p.Size)
}

// AddVectors computes c = a + b on every core.
func AddVectors(a, b, c []float32) {
	parallelFor(len(c), func(lo, hi int) {
		a, b, c := a[lo:hi], b[lo:hi], c[lo:hi]
		for i := range c {
			c[i] = a[i] + b[i]
		}
	})
}

// RunCPU adds on every core of the CPU.
func (p *VectorAddition) RunCPU(ctx context.Context, report Reporter) (Output, error) {
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
		report(Progress{Iteration: i, Total: p.Iterations})
		if err := stopped(ctx, VectorAdditionKind, i, p.Iterations); err != nil {
			return Output{}, err
		}
	}
	w := p.Work()
	return Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gbps": Rate(w.Bytes, elapsed) / 1e9, "checksum": Checksum(c)},
		Info:           map[string]string{"threads": itoa(parallelism())},
	}, nil
}
