package builtin

import "github.com/gpujobs/gpujobs/jobs"

// MatrixMultiply is an NxN float32 GEMM, repeated Iterations times after one warm-up: a FLOP-rate
// benchmark, the GPU's best case.
type MatrixMultiply struct {
	Size       int `json:"size"`
	Iterations int `json:"iterations"`
	// Precision is fp32 (default) or tf32; tf32 only changes GPU runs (tensor cores). The CPU always
	// computes in fp32.
	Precision string `json:"precision,omitempty"`
	Seed      uint64 `json:"seed"`
}

// MatrixMultiplyKind is the kind's name.
const MatrixMultiplyKind = "matrix_multiply"

func matrixMultiplySpec() jobs.Spec {
	return jobs.Spec{
		Kind:     MatrixMultiplyKind,
		Summary:  "NxN float32 GEMM, reports GFLOP/s",
		New:      func() jobs.Params { return &MatrixMultiply{Size: 1000, Iterations: 10, Precision: "fp32", Seed: 42} },
		Headline: gflops,
	}
}

func (*MatrixMultiply) Kind() string { return MatrixMultiplyKind }

func (p *MatrixMultiply) Validate() error {
	if err := checkAll(MatrixMultiplyKind, rangeCheck{"size", p.Size, 1, 32768}, rangeCheck{"iterations", p.Iterations, 1, 100000}); err != nil {
		return err
	}
	switch p.Precision {
	case "", "fp32", "tf32":
	default:
		return &jobs.ParamError{Kind: MatrixMultiplyKind, Field: "precision", Reason: `"` + p.Precision + `" is not allowed, use fp32 or tf32`}
	}
	return jobs.CheckMem(MatrixMultiplyKind, p.Work())
}

func (p *MatrixMultiply) Work() jobs.Work {
	n := float64(p.Size)
	elems := int64(p.Size) * int64(p.Size)
	return jobs.Work{
		FLOPs:         2 * n * n * n * float64(p.Iterations),
		Bytes:         3 * 4 * n * n * float64(p.Iterations),
		MemBytes:      3 * 4 * elems,
		TransferBytes: 3 * 4 * elems,
		Steps:         p.Iterations,
	}
}

// Inputs returns the A and B matrices (row-major) the job multiplies.
func (p *MatrixMultiply) Inputs() (a, b []float32) {
	nn := p.Size * p.Size
	return UniformSlice(p.Seed, 1, nn), UniformSlice(p.Seed, 2, nn)
}
