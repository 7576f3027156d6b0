package kernels

import (
	"context"
	"time"

	"gonum.org/v1/gonum/blas"
)

// ImageProcessing is a 2D convolution over a batch of images, like one CNN layer: input NCHW
// [batch_size, channels, image_size, image_size], weights [filters, channels, k, k], stride 1,
// zero padding kernel_size/2 (so 1 for 3x3), output NCHW [batch_size, filters, image_size,
// image_size], no bias. Reports GFLOP/s.
type ImageProcessing struct {
	BatchSize  int    `json:"batch_size"`
	ImageSize  int    `json:"image_size"`
	Channels   int    `json:"channels"`
	Filters    int    `json:"filters"`
	KernelSize int    `json:"kernel_size"`
	Iterations int    `json:"iterations"`
	Seed       uint64 `json:"seed"`
}

const ImageProcessingKind = "image_processing"

func imageProcessingSpec() Spec {
	return Spec{
		Kind:    ImageProcessingKind,
		Summary: "2D convolution over a batch of images (a CNN layer), reports GFLOP/s",
		New: func() Params {
			return &ImageProcessing{BatchSize: 32, ImageSize: 224, Channels: 3, Filters: 64, KernelSize: 3, Iterations: 50, Seed: 42}
		},
	}
}

func (*ImageProcessing) Kind() string { return ImageProcessingKind }

func (p *ImageProcessing) Validate() error {
	for _, c := range []struct {
		field     string
		v, lo, hi int
	}{
		{"batch_size", p.BatchSize, 1, 4096},
		{"image_size", p.ImageSize, 1, 8192},
		{"channels", p.Channels, 1, 1024},
		{"filters", p.Filters, 1, 4096},
		{"kernel_size", p.KernelSize, 1, 15},
		{"iterations", p.Iterations, 1, 100000},
	} {
		if err := checkRange(ImageProcessingKind, c.field, c.v, c.lo, c.hi); err != nil {
			return err
		}
	}
	if p.KernelSize%2 == 0 {
		return &ParamError{Kind: ImageProcessingKind, Field: "kernel_size", Reason: "must be odd (1, 3, 5, ... 15) so the output keeps the image size"}
	}
	return checkMem(ImageProcessingKind, p.Work())
}

// Shape is the convolution's geometry.
func (p *ImageProcessing) Shape() ConvShape {
	return ConvShape{N: p.BatchSize, C: p.Channels, H: p.ImageSize, W: p.ImageSize, F: p.Filters, K: p.KernelSize}
}

func (p *ImageProcessing) Work() Work {
	s := p.Shape()
	in, w, out := s.InputLen(), s.WeightLen(), s.OutputLen()
	cols := int64(s.C*s.K*s.K) * int64(s.H*s.W)
	return Work{
		FLOPs:         s.FLOPs() * float64(p.Iterations),
		Bytes:         4 * float64(in+w+out) * float64(p.Iterations),
		MemBytes:      4 * (in + w + out + cols),
		TransferBytes: 4 * (in + w + out),
		Steps:         p.Iterations,
	}
}

// ConvShape is a stride-1, same-padding convolution: N images of C×H×W, F filters of C×K×K.
type ConvShape struct{ N, C, H, W, F, K int }

func (s ConvShape) InputLen() int64  { return int64(s.N) * int64(s.C) * int64(s.H) * int64(s.W) }
func (s ConvShape) WeightLen() int64 { return int64(s.F) * int64(s.C) * int64(s.K) * int64(s.K) }
func (s ConvShape) OutputLen() int64 { return int64(s.N) * int64(s.F) * int64(s.H) * int64(s.W) }

// FLOPs of one pass over the batch: a multiply and an add per weight per output pixel.
func (s ConvShape) FLOPs() float64 {
	return 2 * float64(s.OutputLen()) * float64(s.C*s.K*s.K)
}

// Inputs returns the images (NCHW) and the filters (FCKK).
func (p *ImageProcessing) Inputs() (in, w []float32) {
	s := p.Shape()
	return UniformSlice(p.Seed, 1, int(s.InputLen())), UniformSlice(p.Seed, 2, int(s.WeightLen()))
}

// Conv2D computes out = conv(in, w) for the whole batch by im2col + one SGEMM per image. cols is
// scratch of C·K·K·H·W floats.
func Conv2D(s ConvShape, in, w, out, cols []float32) {
	hw := s.H * s.W
	ckk := s.C * s.K * s.K
	for n := 0; n < s.N; n++ {
		img := in[n*s.C*hw : (n+1)*s.C*hw]
		im2col(s, img, cols)
		blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, s.F, hw, ckk, 1, w, ckk, cols, hw, 0, out[n*s.F*hw:(n+1)*s.F*hw], hw)
	}
}

// im2col lays out one image so the convolution becomes a matrix product: row (c,ky,kx) of cols
// holds, for every output pixel, the input pixel that weight meets.
func im2col(s ConvShape, img, cols []float32) {
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

// RunCPU convolves on the CPU with im2col and the compiled-in BLAS.
func (p *ImageProcessing) RunCPU(ctx context.Context, report Reporter) (Output, error) {
	t0 := time.Now()
	s := p.Shape()
	in, w := p.Inputs()
	out := make([]float32, s.OutputLen())
	cols := make([]float32, s.C*s.K*s.K*s.H*s.W)
	warm := s
	warm.N = 1
	Conv2D(warm, in, w, out, cols) // warm-up on one image: page in the scratch, start BLAS threads
	setup := time.Since(t0)

	var elapsed time.Duration
	for i := 1; i <= p.Iterations; i++ {
		start := time.Now()
		Conv2D(s, in, w, out, cols)
		elapsed += time.Since(start)
		report(Progress{Iteration: i, Total: p.Iterations})
		if err := stopped(ctx, ImageProcessingKind, i, p.Iterations); err != nil {
			return Output{}, err
		}
	}
	return Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		Metrics:        map[string]float64{"gflops": Rate(p.Work().FLOPs, elapsed) / 1e9, "checksum": Checksum(out)},
		Info:           cpuInfo(),
	}, nil
}
