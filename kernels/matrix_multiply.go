package kernels

import (
	"context"
	"time"

	"gonum.org/v1/gonum/blas"
)

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

const MatrixMultiplyKind = "matrix_multiply"

func matrixMultiplySpec() Spec {
	return Spec{
		Kind:    MatrixMultiplyKind,
		Summary: "NxN float32 GEMM, reports GFLOP/s",
		New:     func() Params { return &MatrixMultiply{Size: 1000, Iterations: 10, Precision: "fp32", Seed: 42} },
	}
}

func (*MatrixMultiply) Kind() string { return MatrixMultiplyKind }

func (p *MatrixMultiply) Validate() error {
	if err := checkRange(MatrixMultiplyKind, "size", p.Size, 1, 32768); err != nil {
		return err
	}
	if err := checkRange(MatrixMultiplyKind, "iterations", p.Iterations, 1, 100000); err != nil {
		return err
	}
	switch p.Precision {
	case "", "fp32", "tf32":
	default:
		return &ParamError{Kind: MatrixMultiplyKind, Field: "precision", Reason: `"` + p.Precision + `" is not allowed, use fp32 or tf32`}
	}
	return checkMem(MatrixMultiplyKind, p.Work())
}

func (p *MatrixMultiply) Work() Work {
	n := float64(p.Size)
	elems := int64(p.Size) * int64(p.Size)
	return Work{
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

// Sgemm computes c = a·b for row-major n×n matrices with the compiled-in BLAS.
func Sgemm(n int, a, b, c []float32) {
	blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, b, n, 0, c, n)
}

// RunCPU multiplies on the CPU with the compiled-in BLAS.
func (p *MatrixMultiply) RunCPU(ctx context.Context, report Reporter) (Output, error) {
	t0 := time.Now()
	a, b := p.Inputs()
	c := make([]float32, p.Size*p.Size)
	Sgemm(p.Size, a, b, c) // warm-up: page in c, start the BLAS threads
	setup := time.Since(t0)

	var elapsed time.Duration
	for i := 1; i <= p.Iterations; i++ {
		start := time.Now()
		Sgemm(p.Size, a, b, c)
		elapsed += time.Since(start)
		report(Progress{Iteration: i, Total: p.Iterations})
		if err := stopped(ctx, MatrixMultiplyKind, i, p.Iterations); err != nil {
			return Output{}, err
		}
	}
	w := p.Work()
	return Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gflops": Rate(w.FLOPs, elapsed) / 1e9, "checksum": Checksum(c)},
		Info:           cpuInfo(),
	}, nil
}

// cpuInfo names the CPU backend that ran.
func cpuInfo() map[string]string {
	return map[string]string{"blas": BLASName, "threads": itoa(BLASThreads())}
}
