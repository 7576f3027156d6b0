//go:build cuda

package cuda

import (
	"context"
	"fmt"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// vectorAddition is builtin.VectorAddition on the GPU: vector_addition.cu's float4 grid-stride
// kernel over vectors that stay on the device for every iteration, so the rate is the device's
// memory bandwidth (12 bytes per element: two reads and a write), not PCIe's.
func (j *Job) vectorAddition(ctx context.Context, p *builtin.VectorAddition, report jobs.Reporter, result *[]float32) (jobs.Output, error) {
	t0 := time.Now()
	n := int64(p.Size)
	a, b := p.Inputs()
	bufs, err := j.allocAll(4*n, 4*n, 4*n)
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
	const block = 256
	grid := j.gridFor(max(n/4, 1), block, 2048/block)
	add := func(int) error {
		return j.launch(ptx.VectorAdd, dim3{x: grid}, dim3{x: block}, ptrArg(da), ptrArg(db), ptrArg(dc), i64Arg(n))
	}
	return j.timed(ctx, t0, builtin.VectorAdditionKind, p.Iterations, add, report, dc, int64(n), result,
		"gbps", p.Work().Bytes, jobs.Output{Kernel: fmt.Sprintf("%s %dx%d", ptx.VectorAdd, grid, block)})
}
