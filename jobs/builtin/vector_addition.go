package builtin

import "github.com/gpujobs/gpujobs/jobs"

// VectorAddition adds two float32 vectors Iterations times: a memory-bandwidth benchmark, where a
// GPU's advantage is eaten by the host↔device copies unless the data stays on the device.
type VectorAddition struct {
	Size       int    `json:"size"`
	Iterations int    `json:"iterations"`
	Seed       uint64 `json:"seed"`
}

// VectorAdditionKind is the kind's name.
const VectorAdditionKind = "vector_addition"

func vectorAdditionSpec() jobs.Spec {
	return jobs.Spec{
		Kind:     VectorAdditionKind,
		Summary:  "c = a + b over float32 vectors, reports GB/s",
		New:      func() jobs.Params { return &VectorAddition{Size: 10_000_000, Iterations: 100, Seed: 42} },
		Headline: gbps,
	}
}

func (*VectorAddition) Kind() string { return VectorAdditionKind }

func (p *VectorAddition) Validate() error {
	if err := checkAll(VectorAdditionKind, rangeCheck{"size", p.Size, 1, 1 << 30}, rangeCheck{"iterations", p.Iterations, 1, 1000000}); err != nil {
		return err
	}
	return jobs.CheckMem(VectorAdditionKind, p.Work())
}

func (p *VectorAddition) Work() jobs.Work {
	n := int64(p.Size)
	return jobs.Work{
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
