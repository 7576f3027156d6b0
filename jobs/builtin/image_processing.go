package builtin

import "github.com/gpujobs/gpujobs/jobs"

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

// ImageProcessingKind is the kind's name.
const ImageProcessingKind = "image_processing"

func imageProcessingSpec() jobs.Spec {
	return jobs.Spec{
		Kind:    ImageProcessingKind,
		Summary: "2D convolution over a batch of images (a CNN layer), reports GFLOP/s",
		New: func() jobs.Params {
			return &ImageProcessing{BatchSize: 32, ImageSize: 224, Channels: 3, Filters: 64, KernelSize: 3, Iterations: 50, Seed: 42}
		},
		Headline: gflops,
	}
}

func (*ImageProcessing) Kind() string { return ImageProcessingKind }

func (p *ImageProcessing) Validate() error {
	if err := checkAll(ImageProcessingKind,
		rangeCheck{"batch_size", p.BatchSize, 1, 4096},
		rangeCheck{"image_size", p.ImageSize, 1, 8192},
		rangeCheck{"channels", p.Channels, 1, 1024},
		rangeCheck{"filters", p.Filters, 1, 4096},
		rangeCheck{"kernel_size", p.KernelSize, 1, 15},
		rangeCheck{"iterations", p.Iterations, 1, 100000},
	); err != nil {
		return err
	}
	if p.KernelSize%2 == 0 {
		return &jobs.ParamError{Kind: ImageProcessingKind, Field: "kernel_size", Reason: "must be odd (1, 3, 5, ... 15) so the output keeps the image size"}
	}
	return jobs.CheckMem(ImageProcessingKind, p.Work())
}

// Shape is the convolution's geometry.
func (p *ImageProcessing) Shape() ConvShape {
	return ConvShape{N: p.BatchSize, C: p.Channels, H: p.ImageSize, W: p.ImageSize, F: p.Filters, K: p.KernelSize}
}

func (p *ImageProcessing) Work() jobs.Work {
	s := p.Shape()
	in, w, out := s.InputLen(), s.WeightLen(), s.OutputLen()
	cols := int64(s.C*s.K*s.K) * int64(s.H*s.W)
	return jobs.Work{
		FLOPs:         s.FLOPs() * float64(p.Iterations),
		Bytes:         4 * float64(in+w+out) * float64(p.Iterations),
		MemBytes:      4 * (in + w + out + cols),
		TransferBytes: 4 * (in + w + out),
		Steps:         p.Iterations,
	}
}

// Inputs returns the images (NCHW) and the filters (FCKK).
func (p *ImageProcessing) Inputs() (in, w []float32) {
	s := p.Shape()
	return UniformSlice(p.Seed, 1, int(s.InputLen())), UniformSlice(p.Seed, 2, int(s.WeightLen()))
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
