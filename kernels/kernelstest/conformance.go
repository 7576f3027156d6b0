// Package kernelstest is the conformance suite that every implementation of the job types runs:
// pure-Go gonum, OpenBLAS (-tags openblas) and CUDA (-tags cuda, on a machine with a GPU). It
// compares what an implementation reports with naive references computed here in float64.
package kernelstest

import (
	"context"
	"math"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
)

// Run executes one job on the implementation under test.
type Run func(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error)

// Conformance checks every job type on small shapes, odd sizes included, against naive references.
func Conformance(t *testing.T, run Run) {
	t.Run("matrix_multiply", func(t *testing.T) {
		for _, n := range []int{1, 7, 64, 129} {
			p := &builtin.MatrixMultiply{Size: n, Iterations: 2, Precision: "fp32", Seed: uint64(n)}
			out := mustRun(t, run, p)
			a, b := p.Inputs()
			want, scale := naiveGemmChecksum(n, a, b)
			checkClose(t, "checksum", out.Metrics["checksum"], want, 1e-5*scale)
			checkPositive(t, out, "gflops")
		}
	})
	t.Run("vector_addition", func(t *testing.T) {
		for _, n := range []int{1, 3, 1000, 100_003} {
			p := &builtin.VectorAddition{Size: n, Iterations: 3, Seed: uint64(n)}
			out := mustRun(t, run, p)
			a, b := p.Inputs()
			var want, scale float64
			for i := range a {
				s := float64(a[i]) + float64(b[i])
				want += s
				scale += math.Abs(s)
			}
			checkClose(t, "checksum", out.Metrics["checksum"], want, 1e-6*scale)
			checkPositive(t, out, "gbps")
		}
	})
	t.Run("image_processing", func(t *testing.T) {
		for _, p := range []*builtin.ImageProcessing{
			{BatchSize: 1, ImageSize: 1, Channels: 1, Filters: 1, KernelSize: 3, Iterations: 1, Seed: 1},
			{BatchSize: 2, ImageSize: 9, Channels: 3, Filters: 4, KernelSize: 3, Iterations: 2, Seed: 2},
			{BatchSize: 3, ImageSize: 17, Channels: 2, Filters: 5, KernelSize: 5, Iterations: 1, Seed: 3},
			{BatchSize: 1, ImageSize: 4, Channels: 2, Filters: 3, KernelSize: 7, Iterations: 1, Seed: 4},
		} {
			out := mustRun(t, run, p)
			in, w := p.Inputs()
			ref := NaiveConv2D(p.Shape(), in, w)
			var want, scale float64
			for _, v := range ref {
				want += v
				scale += math.Abs(v)
			}
			checkClose(t, "checksum", out.Metrics["checksum"], want, 1e-5*scale+1e-6)
			checkPositive(t, out, "gflops")
		}
	})
	t.Run("neural_network", func(t *testing.T) {
		p := &builtin.NeuralNetwork{Epochs: 8, BatchSize: 32, InputSize: 20, HiddenSize: 16, OutputSize: 4, Samples: 256, LearningRate: 1e-2, Seed: 7}
		out := mustRun(t, run, p)
		d := kernels.MLPInputs(p)
		wantLoss := NaiveFirstLoss(p, d)
		checkClose(t, "initial_loss", out.Metrics["initial_loss"], wantLoss, 1e-4*wantLoss)
		if final := out.Metrics["final_loss"]; !(final < 0.6*wantLoss) {
			t.Errorf("final_loss %.4f did not fall well below the initial %.4f", final, wantLoss)
		}
		checkPositive(t, out, "samples_per_sec")
	})
}

func mustRun(t *testing.T, run Run, p jobs.Params) jobs.Output {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("test params invalid: %v", err)
	}
	steps := 0
	out, err := run(context.Background(), p, func(pr jobs.Progress) {
		steps++
		if pr.Iteration != steps || pr.Total != p.Work().Steps {
			t.Errorf("progress %d/%d, want %d/%d", pr.Iteration, pr.Total, steps, p.Work().Steps)
		}
	})
	if err != nil {
		t.Fatalf("%s %+v: %v", p.Kind(), p, err)
	}
	if steps != p.Work().Steps {
		t.Errorf("%s reported %d progress steps, want %d", p.Kind(), steps, p.Work().Steps)
	}
	if out.ProcessingTime <= 0 {
		t.Errorf("%s: processing time %v, want > 0", p.Kind(), out.ProcessingTime)
	}
	return out
}

func checkClose(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %.9g, want %.9g ± %.3g", name, got, want, tol)
	}
}

func checkPositive(t *testing.T, out jobs.Output, metric string) {
	t.Helper()
	if v := out.Metrics[metric]; !(v > 0) || math.IsInf(v, 0) {
		t.Errorf("metric %s = %v, want a positive finite rate", metric, v)
	}
}

// naiveGemmChecksum returns the sum of a·b's elements and the sum of their absolute values.
func naiveGemmChecksum(n int, a, b []float32) (sum, abs float64) {
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var c float64
			for k := 0; k < n; k++ {
				c += float64(a[i*n+k]) * float64(b[k*n+j])
			}
			sum += c
			abs += math.Abs(c)
		}
	}
	return sum, abs
}

// NaiveGemm is the reference product of row-major n×n matrices, in float64.
func NaiveGemm(n int, a, b []float32) []float64 {
	c := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for k := 0; k < n; k++ {
			aik := float64(a[i*n+k])
			for j := 0; j < n; j++ {
				c[i*n+j] += aik * float64(b[k*n+j])
			}
		}
	}
	return c
}

// NaiveConv2D is the reference convolution (NCHW, same padding, stride 1), in float64.
func NaiveConv2D(s builtin.ConvShape, in, w []float32) []float64 {
	out := make([]float64, s.OutputLen())
	pad := s.K / 2
	for n := 0; n < s.N; n++ {
		for f := 0; f < s.F; f++ {
			for y := 0; y < s.H; y++ {
				for x := 0; x < s.W; x++ {
					var acc float64
					for c := 0; c < s.C; c++ {
						for ky := 0; ky < s.K; ky++ {
							for kx := 0; kx < s.K; kx++ {
								iy, ix := y+ky-pad, x+kx-pad
								if iy < 0 || iy >= s.H || ix < 0 || ix >= s.W {
									continue
								}
								acc += float64(in[((n*s.C+c)*s.H+iy)*s.W+ix]) * float64(w[((f*s.C+c)*s.K+ky)*s.K+kx])
							}
						}
					}
					out[((n*s.F+f)*s.H+y)*s.W+x] = acc
				}
			}
		}
	}
	return out
}

// NaiveFirstLoss is the mean cross-entropy of the first batch under the initial weights.
func NaiveFirstLoss(p *builtin.NeuralNetwork, d kernels.MLPData) float64 {
	b := min(p.BatchSize, p.Samples)
	in, hid, out := p.InputSize, p.HiddenSize, p.OutputSize
	var loss float64
	for r := 0; r < b; r++ {
		h := make([]float64, hid)
		for j := range h {
			acc := float64(d.B1[j])
			for k := 0; k < in; k++ {
				acc += float64(d.X[r*in+k]) * float64(d.W1[k*hid+j])
			}
			h[j] = math.Max(acc, 0)
		}
		z := make([]float64, out)
		mx := math.Inf(-1)
		for j := range z {
			acc := float64(d.B2[j])
			for k := 0; k < hid; k++ {
				acc += h[k] * float64(d.W2[k*out+j])
			}
			z[j] = acc
			mx = math.Max(mx, acc)
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(v - mx)
		}
		loss -= z[d.Labels[r]] - mx - math.Log(sum)
	}
	return loss / float64(b)
}
