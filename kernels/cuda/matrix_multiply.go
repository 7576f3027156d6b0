//go:build cuda

package cuda

import (
	"context"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// matrixMultiply is builtin.MatrixMultiply on the GPU: C = A·B with cuBLAS SGEMM, or with the
// tiled PTX SGEMM of matrix_multiply.cu. precision tf32 switches cuBLAS to TF32 tensor-core
// math; the PTX kernels always compute in FP32, and Output.Precision says which ran.
func (j *Job) matrixMultiply(ctx context.Context, p *builtin.MatrixMultiply, report jobs.Reporter, result *[]float32) (jobs.Output, error) {
	t0 := time.Now()
	n := p.Size
	elems := int64(n) * int64(n)
	a, b := p.Inputs()
	bufs, err := j.allocAll(4*elems, 4*elems, 4*elems)
	if err != nil {
		return jobs.Output{}, err
	}
	da, db, dc := bufs[0], bufs[1], bufs[2]
	if err := upload(j, da, a); err != nil {
		return jobs.Output{}, err
	}
	if err := upload(j, db, b); err != nil {
		return jobs.Output{}, err
	}
	precision := "fp32"
	if j.blas != nil {
		tf32 := p.Precision == "tf32"
		if err := j.blas.SetTF32(tf32); err != nil {
			return jobs.Output{}, err
		}
		defer j.blas.SetTF32(false) //nolint:errcheck // the next job sets its own mode
		if tf32 {
			precision = "tf32"
		}
	}
	multiply := func(int) error { return j.sgemm(false, false, n, n, n, da, n, db, n, dc, n) }
	return j.timed(ctx, t0, builtin.MatrixMultiplyKind, p.Iterations, multiply, report, dc, int64(elems), result,
		"gflops", p.Work().FLOPs, jobs.Output{GEMM: j.gemmName(), Precision: precision})
}
