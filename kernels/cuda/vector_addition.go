//go:build cuda

package cuda

import (
	"context"
	"strconv"
	"time"

	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// vectorAddition is kernels.VectorAddition on the GPU: vector_addition.cu's float4 grid-stride
// kernel over vectors that stay on the device for every iteration, so the rate is the device's
// memory bandwidth (12 bytes per element: two reads and a write), not PCIe's.
func (j *job) vectorAddition(ctx context.Context, p *kernels.VectorAddition, report kernels.Reporter, result *[]float32) (kernels.Output, error) {
	t0 := time.Now()
	n := int64(p.Size)
	a, b := p.Inputs()
	bufs, err := j.allocAll(4*n, 4*n, 4*n)
	if err != nil {
		return kernels.Output{}, err
	}
	da, db, dc := bufs[0], bufs[1], bufs[2]
	if err := upload(j, da, a); err != nil {
		return kernels.Output{}, err
	}
	if err := upload(j, db, b); err != nil {
		return kernels.Output{}, err
	}
	const block = 256
	grid := j.gridFor(max(n/4, 1), block, 2048/block)
	add := func(int) error {
		return j.launch(ptx.VectorAdd, dim3{x: grid}, dim3{x: block}, ptrArg(da), ptrArg(db), ptrArg(dc), i64Arg(n))
	}
	if err := add(0); err != nil { // warm-up
		return kernels.Output{}, err
	}
	setup := time.Since(t0) - j.transfer

	elapsed, err := j.iterate(ctx, kernels.VectorAdditionKind, p.Iterations, add, report)
	if err != nil {
		return kernels.Output{}, err
	}
	c := make([]float32, n)
	if err := download(j, c, dc); err != nil {
		return kernels.Output{}, err
	}
	if result != nil {
		*result = c
	}
	return kernels.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		TransferTime:   j.transfer,
		Metrics:        map[string]float64{"gbps": kernels.Rate(p.Work().Bytes, elapsed) / 1e9, "checksum": kernels.Checksum(c)},
		Info:           map[string]string{"grid": strconv.Itoa(grid) + "x" + strconv.Itoa(block)},
	}, nil
}
