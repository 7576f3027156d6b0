//go:build cuda

package cuda

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// imageProcessing is builtin.ImageProcessing on the GPU: the implicit-GEMM convolution of
// image_processing.cu, with the same semantics as kernels.Conv2D (NCHW, stride 1, zero padding
// K/2, no bias) and without materialising the im2col matrix.
func (j *Job) imageProcessing(ctx context.Context, p *builtin.ImageProcessing, report jobs.Reporter, result *[]float32) (jobs.Output, error) {
	t0 := time.Now()
	s := p.Shape()
	in, w := p.Inputs()
	ckk := s.C * s.K * s.K
	taps := convTaps(s)
	bufs, err := j.allocAll(4*s.InputLen(), 4*s.WeightLen(), 4*s.OutputLen(), int64(len(taps)))
	if err != nil {
		return jobs.Output{}, err
	}
	din, dw, dout, dtaps := bufs[0], bufs[1], bufs[2], bufs[3]
	if err := upload(j, din, in); err != nil {
		return jobs.Output{}, err
	}
	if err := upload(j, dw, w); err != nil {
		return jobs.Output{}, err
	}
	if err := upload(j, dtaps, taps); err != nil {
		return jobs.Output{}, err
	}
	pixels := int64(s.N) * int64(s.H) * int64(s.W)
	plan := ptx.PlanConv(s.F, pixels, s.InputLen(), s.OutputLen())
	conv := func(int) error {
		return j.launch(plan.Kernel, dim3{x: plan.GridX, y: plan.GridY}, dim3{x: plan.Threads}, ptrArg(din), ptrArg(dw), ptrArg(dout), ptrArg(dtaps),
			intArg(s.C), intArg(s.H), intArg(s.W), intArg(s.F), intArg(ckk), i64Arg(pixels))
	}
	return j.timed(ctx, t0, builtin.ImageProcessingKind, p.Iterations, conv, report, dout, s.OutputLen(), result,
		"gflops", p.Work().FLOPs, jobs.Output{Kernel: "implicit-gemm " + plan.Kernel})
}

// convTaps is the gather table of image_processing.cu, one 16-byte ConvTap per row k = (c, ky, kx)
// of the implicit im2col matrix: {int64 c·H·W + dy·W + dx, int32 dy, int32 dx}, dy = ky − K/2,
// dx = kx − K/2.
func convTaps(s builtin.ConvShape) []byte {
	ckk, pad := s.C*s.K*s.K, s.K/2
	b := make([]byte, 16*ckk)
	for k := 0; k < ckk; k++ {
		c, ky, kx := k/(s.K*s.K), k/s.K%s.K, k%s.K
		dy, dx := ky-pad, kx-pad
		delta := int64(c)*int64(s.H)*int64(s.W) + int64(dy)*int64(s.W) + int64(dx)
		binary.LittleEndian.PutUint64(b[16*k:], uint64(delta))
		binary.LittleEndian.PutUint32(b[16*k+8:], uint32(int32(dy)))
		binary.LittleEndian.PutUint32(b[16*k+12:], uint32(int32(dx)))
	}
	return b
}
