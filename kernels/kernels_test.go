package kernels_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/kernelstest"
)

// cpuRun runs a job through the CPU registry, as a CPU worker does.
func cpuRun(ctx context.Context, p jobs.Params, r jobs.Reporter) (jobs.Output, error) {
	f, err := kernels.CPU().Lookup(p.Kind())
	if err != nil {
		return jobs.Output{}, err
	}
	return f(ctx, p, r)
}

// Every built-in kind has a CPU implementation, and the CPU registry holds nothing else.
func TestCPUImplementsTheBuiltins(t *testing.T) {
	// command runs programs, not kernels: the worker registers its runner (internal/command).
	want := strings.Join(slices.DeleteFunc(builtin.Kinds().Names(), func(k string) bool { return k == builtin.CommandKind }), ",")
	if got := strings.Join(kernels.CPU().Kinds(), ","); got != want {
		t.Errorf("CPU implementations %s, built-in kinds %s", got, want)
	}
	if _, err := kernels.CPU().Lookup("sorting"); err == nil || !strings.Contains(err.Error(), "sorting has no cpu implementation") {
		t.Errorf("lookup of an unknown kind: %v", err)
	}
}

func TestConformanceCPU(t *testing.T) {
	t.Logf("BLAS backend %s, %d threads", kernels.BLASName, kernels.BLASThreads())
	kernelstest.Conformance(t, cpuRun)
}

func TestSgemmMatchesNaive(t *testing.T) {
	for _, n := range []int{1, 2, 5, 33, 100} {
		p := &builtin.MatrixMultiply{Size: n, Seed: 3}
		a, b := p.Inputs()
		c := make([]float32, n*n)
		kernels.Sgemm(n, a, b, c)
		want := kernelstest.NaiveGemm(n, a, b)
		for i := range c {
			if math.Abs(float64(c[i])-want[i]) > 1e-5*float64(n) {
				t.Fatalf("n=%d: c[%d] = %g, want %g", n, i, c[i], want[i])
			}
		}
	}
}

func TestConv2DMatchesNaive(t *testing.T) {
	for _, s := range []builtin.ConvShape{
		{N: 1, C: 1, H: 1, W: 1, F: 1, K: 1},
		{N: 2, C: 3, H: 8, W: 8, F: 4, K: 3},
		{N: 1, C: 2, H: 5, W: 5, F: 3, K: 5},
		{N: 1, C: 1, H: 2, W: 2, F: 2, K: 15}, // kernel much larger than the image
	} {
		p := &builtin.ImageProcessing{BatchSize: s.N, Channels: s.C, ImageSize: s.H, Filters: s.F, KernelSize: s.K, Seed: 9}
		in, w := p.Inputs()
		out := make([]float32, s.OutputLen())
		kernels.Conv2D(s, in, w, out, make([]float32, s.C*s.K*s.K*s.H*s.W))
		want := kernelstest.NaiveConv2D(s, in, w)
		for i := range out {
			if math.Abs(float64(out[i])-want[i]) > 1e-5*float64(s.C*s.K*s.K) {
				t.Fatalf("%+v: out[%d] = %g, want %g", s, i, out[i], want[i])
			}
		}
	}
}

func TestAddVectors(t *testing.T) {
	p := &builtin.VectorAddition{Size: 12345, Seed: 1}
	a, b := p.Inputs()
	c := make([]float32, len(a))
	kernels.AddVectors(a, b, c)
	for i := range c {
		if c[i] != a[i]+b[i] {
			t.Fatalf("c[%d] = %g, want %g", i, c[i], a[i]+b[i])
		}
	}
}

func TestNeuralNetworkLearns(t *testing.T) {
	// The seed's network (784-256-10, batch 64, Adam 1e-3) on fewer samples, so it runs in a second.
	p := &builtin.NeuralNetwork{Epochs: 3, BatchSize: 64, InputSize: 784, HiddenSize: 256, OutputSize: 10, Samples: 2048, LearningRate: 1e-3, Seed: 42}
	var losses []float64
	out, err := cpuRun(context.Background(), p, func(pr jobs.Progress) { losses = append(losses, *pr.Loss) })
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != 3 {
		t.Fatalf("got %d epoch losses, want 3", len(losses))
	}
	for i := 1; i < len(losses); i++ {
		if !(losses[i] < losses[i-1]) {
			t.Errorf("epoch %d loss %.4f did not fall from %.4f", i+1, losses[i], losses[i-1])
		}
	}
	initial, final := out.Metrics["initial_loss"], out.Metrics["final_loss"]
	if math.Abs(initial-math.Log(10)) > 0.5 {
		t.Errorf("initial loss %.3f, want about ln(10) = 2.303 for 10 classes", initial)
	}
	if !(final < 0.5*initial) {
		t.Errorf("final loss %.3f, want below half the initial %.3f", final, initial)
	}
	if acc := out.Metrics["accuracy"]; acc < 0.6 {
		t.Errorf("training accuracy %.2f, want ≥ 0.6 on teacher-labelled data", acc)
	}
}

func TestKernelsStopWithinOneStep(t *testing.T) {
	for _, p := range []jobs.Params{
		&builtin.MatrixMultiply{Size: 64, Iterations: 1000, Seed: 1},
		&builtin.VectorAddition{Size: 1000, Iterations: 1000, Seed: 1},
		&builtin.ImageProcessing{BatchSize: 1, ImageSize: 8, Channels: 1, Filters: 1, KernelSize: 3, Iterations: 1000, Seed: 1},
		&builtin.NeuralNetwork{Epochs: 1000, BatchSize: 8, InputSize: 4, HiddenSize: 4, OutputSize: 2, Samples: 16, LearningRate: 0.01, Seed: 1},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		steps := 0
		_, err := cpuRun(ctx, p, func(jobs.Progress) {
			steps++
			if steps == 3 {
				cancel()
			}
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", p.Kind(), err)
		}
		if steps != 3 {
			t.Errorf("%s: ran %d steps after cancelling at step 3", p.Kind(), steps)
		}
	}
}
