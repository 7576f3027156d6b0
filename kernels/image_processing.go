package kernels

import (
	"context"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// Conv2D computes out = conv(in, w) for the whole batch by im2col + one SGEMM per image. cols is
// scratch of C·K·K·H·W floats.
func Conv2D(s builtin.ConvShape, in, w, out, cols []float32) {
	conv2D(context.Background(), s, in, w, out, cols) //nolint:errcheck // a background context is never done
}

// conv2D is Conv2D that stops between two images, or two tiles of a large image's product, once
// ctx is done.
func conv2D(ctx context.Context, s builtin.ConvShape, in, w, out, cols []float32) error {
	hw := s.H * s.W
	ckk := s.C * s.K * s.K
	for n := 0; n < s.N; n++ {
		img := in[n*s.C*hw : (n+1)*s.C*hw]
		im2col(s, img, cols)
		if err := sgemmNN(ctx, s.F, hw, ckk, w, ckk, cols, hw, out[n*s.F*hw:(n+1)*s.F*hw], hw); err != nil {
			return err
		}
	}
	return nil
}

// im2col lays out one image so the convolution becomes a matrix product: row (c,ky,kx) of cols
// holds, for every output pixel, the input pixel that weight meets.
func im2col(s builtin.ConvShape, img, cols []float32) {
	pad := s.K / 2
	hw := s.H * s.W
	parallelFor(s.C*s.K*s.K, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			c, ky, kx := row/(s.K*s.K), row/s.K%s.K, row%s.K
			dst := cols[row*hw : (row+1)*hw]
			src := img[c*hw : (c+1)*hw]
			for y := 0; y < s.H; y++ {
				iy := y + ky - pad
				line := dst[y*s.W : (y+1)*s.W]
				if iy < 0 || iy >= s.H {
					clear(line)
					continue
				}
				srcLine := src[iy*s.W : (iy+1)*s.W]
				// x ranges where ix = x+kx-pad is inside the image.
				x0 := min(max(0, pad-kx), s.W)
				x1 := max(min(s.W, s.W+pad-kx), x0)
				clear(line[:x0])
				if x1 > x0 {
					copy(line[x0:x1], srcLine[x0+kx-pad:x1+kx-pad])
				}
				clear(line[x1:])
			}
		}
	})
}

// ImageProcessing convolves on the CPU with im2col and the compiled-in BLAS.
func ImageProcessing(ctx context.Context, p *builtin.ImageProcessing, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	s := p.Shape()
	in, w := p.Inputs()
	out := make([]float32, s.OutputLen())
	cols := make([]float32, s.C*s.K*s.K*s.H*s.W)
	warm := s
	warm.N = 1
	// warm-up on one image: page in the scratch, start BLAS threads
	if err := conv2D(ctx, warm, in, w, out, cols); err != nil {
		return jobs.Output{}, jobs.Stopped(ctx, builtin.ImageProcessingKind, 0, p.Iterations)
	}
	setup := time.Since(t0)

	var elapsed time.Duration
	for i := 1; i <= p.Iterations; i++ {
		start := time.Now()
		if err := conv2D(ctx, s, in, w, out, cols); err != nil {
			return jobs.Output{}, jobs.Stopped(ctx, builtin.ImageProcessingKind, i-1, p.Iterations)
		}
		elapsed += time.Since(start)
		report(jobs.Progress{Iteration: i, Total: p.Iterations})
		if err := jobs.Stopped(ctx, builtin.ImageProcessingKind, i, p.Iterations); err != nil {
			return jobs.Output{}, err
		}
	}
	return cpuOutput(jobs.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gflops": jobs.Rate(p.Work().FLOPs, elapsed) / 1e9, "checksum": Checksum(out)},
	}), nil
}
