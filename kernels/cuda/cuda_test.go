//go:build cuda

package cuda

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/kernelstest"
)

// These tests need a GPU. On a machine without one the test binary does not get here: package
// probe prints why and exits 0 before gorgonia.org/cu's init would end the process. CI only
// compiles them (go test -tags cuda -c); on a GPU node, build them with `make build-gpu` and run
// bin/cuda.test.

func newRunner(t *testing.T, o Options) *Runner {
	t.Helper()
	r, err := NewRunner(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func runWith(r *Runner, gemm string) kernelstest.Run {
	return func(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
		return r.RunWith(ctx, p, report, RunOptions{GEMM: gemm})
	}
}

func TestConformancePTX(t *testing.T) {
	r := newRunner(t, Options{GEMM: GEMMPTX})
	t.Logf("%s, kernels from %s", r.Name(), r.devices[0].loaded)
	kernelstest.Conformance(t, runWith(r, GEMMPTX))
}

func TestConformanceCuBLAS(t *testing.T) {
	r := newRunner(t, Options{})
	if impl, why := r.GEMM(); impl != GEMMCuBLAS {
		t.Skipf("no cuBLAS: %s", why)
	}
	kernelstest.Conformance(t, runWith(r, GEMMCuBLAS))
}

// The GPU's output buffers match the CPU's element by element on the same seeded inputs.
func TestMatchesCPU(t *testing.T) {
	r := newRunner(t, Options{GEMM: GEMMPTX})
	ctx := context.Background()
	for _, n := range []int{1, 7, 64, 129, 300} {
		p := &builtin.MatrixMultiply{Size: n, Iterations: 1, Precision: "fp32", Seed: 5}
		var got []float32
		if _, err := r.RunWith(ctx, p, func(jobs.Progress) {}, RunOptions{Result: &got}); err != nil {
			t.Fatal(err)
		}
		a, b := p.Inputs()
		want := make([]float32, n*n)
		kernels.Sgemm(n, a, b, want)
		if e := kernels.MaxRelErr(got, want, 1); e > 1e-4 {
			t.Errorf("matrix_multiply %d: max relative error %.2g", n, e)
		}
	}
	for _, s := range []builtin.ConvShape{{N: 2, C: 3, H: 9, W: 9, F: 4, K: 3}, {N: 1, C: 2, H: 5, W: 5, F: 70, K: 5}, {N: 3, C: 1, H: 7, W: 7, F: 3, K: 1}} {
		p := &builtin.ImageProcessing{BatchSize: s.N, Channels: s.C, ImageSize: s.H, Filters: s.F, KernelSize: s.K, Iterations: 1, Seed: 2}
		var got []float32
		if _, err := r.RunWith(ctx, p, func(jobs.Progress) {}, RunOptions{Result: &got}); err != nil {
			t.Fatal(err)
		}
		in, w := p.Inputs()
		want := make([]float32, s.OutputLen())
		kernels.Conv2D(s, in, w, want, make([]float32, s.C*s.K*s.K*s.H*s.W))
		if e := kernels.MaxRelErr(got, want, 1); e > 1e-4 {
			t.Errorf("image_processing %+v: max relative error %.2g", s, e)
		}
	}
}

func TestFits(t *testing.T) {
	r := newRunner(t, Options{GEMM: GEMMPTX})
	mem := r.Devices()[0].Memory
	err := r.Fits(jobs.Work{MemBytes: 2 * mem})
	var me *MemoryError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "can hold") {
		t.Errorf("Fits(2× device memory) = %v, want a MemoryError naming the limit", err)
	}
	if err := r.Fits(jobs.Work{MemBytes: 1 << 20}); err != nil {
		t.Errorf("Fits(1 MiB) = %v", err)
	}
}

// A CUDA error fails its job with the error's name, and the runner goes on serving.
func TestFaultsLeaveRunnerServing(t *testing.T) {
	r := newRunner(t, Options{})
	for _, f := range []struct{ fault, name string }{
		{FaultOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY"},
		{FaultIllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS"},
	} {
		err := r.ProvokeFault(0, f.fault)
		if err == nil || !strings.Contains(err.Error(), f.name) {
			t.Errorf("%s: error %v, want %s", f.fault, err, f.name)
		}
		p := &builtin.MatrixMultiply{Size: 64, Iterations: 2, Seed: 1}
		out, err := r.Run(context.Background(), p, func(jobs.Progress) {})
		if err != nil {
			t.Fatalf("after %s: %v", f.fault, err)
		}
		a, b := p.Inputs()
		want := make([]float32, 64*64)
		kernels.Sgemm(64, a, b, want)
		if got := out.Metrics["checksum"]; math.Abs(got-kernels.Checksum(want)) > 1e-2 {
			t.Errorf("after %s: checksum %g, want %g", f.fault, got, kernels.Checksum(want))
		}
	}
}

func TestStopsWithinOneStep(t *testing.T) {
	r := newRunner(t, Options{})
	for _, p := range []jobs.Params{
		&builtin.MatrixMultiply{Size: 512, Iterations: 1000, Seed: 1},
		&builtin.VectorAddition{Size: 1 << 20, Iterations: 1000, Seed: 1},
		&builtin.ImageProcessing{BatchSize: 2, ImageSize: 64, Channels: 3, Filters: 8, KernelSize: 3, Iterations: 1000, Seed: 1},
		&builtin.NeuralNetwork{Epochs: 1000, BatchSize: 8, InputSize: 4, HiddenSize: 4, OutputSize: 2, Samples: 16, LearningRate: 0.01, Seed: 1},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		steps := 0
		_, err := r.Run(ctx, p, func(jobs.Progress) {
			steps++
			if steps == 3 {
				cancel()
			}
		})
		cancel()
		if !errors.Is(err, context.Canceled) || steps != 3 {
			t.Errorf("%s: %d steps, err %v; want 3 steps and context.Canceled", p.Kind(), steps, err)
		}
	}
}
