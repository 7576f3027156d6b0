package kernels_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/kernelstest"
)

func cpuRun(ctx context.Context, p kernels.Params, r kernels.Reporter) (kernels.Output, error) {
	return p.RunCPU(ctx, r)
}

func TestConformanceCPU(t *testing.T) {
	t.Logf("BLAS backend %s, %d threads", kernels.BLASName, kernels.BLASThreads())
	kernelstest.Conformance(t, cpuRun)
}

func TestSgemmMatchesNaive(t *testing.T) {
	for _, n := range []int{1, 2, 5, 33, 100} {
		p := &kernels.MatrixMultiply{Size: n, Seed: 3}
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
	for _, s := range []kernels.ConvShape{
		{N: 1, C: 1, H: 1, W: 1, F: 1, K: 1},
		{N: 2, C: 3, H: 8, W: 8, F: 4, K: 3},
		{N: 1, C: 2, H: 5, W: 5, F: 3, K: 5},
		{N: 1, C: 1, H: 2, W: 2, F: 2, K: 15}, // kernel much larger than the image
	} {
		p := &kernels.ImageProcessing{BatchSize: s.N, Channels: s.C, ImageSize: s.H, Filters: s.F, KernelSize: s.K, Seed: 9}
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
	p := &kernels.VectorAddition{Size: 12345, Seed: 1}
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
	p := &kernels.NeuralNetwork{Epochs: 3, BatchSize: 64, InputSize: 784, HiddenSize: 256, OutputSize: 10, Samples: 2048, LearningRate: 1e-3, Seed: 42}
	var losses []float64
	out, err := p.RunCPU(context.Background(), func(pr kernels.Progress) { losses = append(losses, *pr.Loss) })
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
	for _, p := range []kernels.Params{
		&kernels.MatrixMultiply{Size: 64, Iterations: 1000, Seed: 1},
		&kernels.VectorAddition{Size: 1000, Iterations: 1000, Seed: 1},
		&kernels.ImageProcessing{BatchSize: 1, ImageSize: 8, Channels: 1, Filters: 1, KernelSize: 3, Iterations: 1000, Seed: 1},
		&kernels.NeuralNetwork{Epochs: 1000, BatchSize: 8, InputSize: 4, HiddenSize: 4, OutputSize: 2, Samples: 16, LearningRate: 0.01, Seed: 1},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		steps := 0
		_, err := cpuRun(ctx, p, func(kernels.Progress) {
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

func TestDecode(t *testing.T) {
	r := kernels.Default()
	tests := []struct {
		kind, params string
		wantErr      []string // substrings; nil means valid
	}{
		{"matrix_multiply", ``, nil},
		{"matrix_multiply", `{"size": 64}`, nil},
		{"matrix_multiply", `{"size": -1}`, []string{"size", "-1", "1..32768"}},
		{"matrix_multiply", `{"size": 0}`, []string{"size", "1..32768"}},
		{"matrix_multiply", `{"iterations": 0}`, []string{"iterations", "1..100000"}},
		{"matrix_multiply", `{"precision": "fp16"}`, []string{"precision", "fp32 or tf32"}},
		{"matrix_multiply", `{"size": "big"}`, []string{"size", "expected int"}},
		{"matrix_multiply", `{"sise": 10}`, []string{"sise", "known fields are size, iterations, precision, seed"}},
		{"matrix_multiply", `[1,2]`, []string{"params", "expected a JSON object"}},
		{"vector_addition", `{"size": 1e3}`, []string{"size", "expected int"}},
		{"vector_addition", `{"size": 2000000000}`, []string{"size", "1..1073741824"}},
		{"vector_addition", `{"iterations": -5}`, []string{"iterations"}},
		{"image_processing", `{"kernel_size": 4}`, []string{"kernel_size", "odd"}},
		{"image_processing", `{"image_size": 0}`, []string{"image_size", "1..8192"}},
		{"image_processing", `{"batch_size": 4096, "image_size": 8192, "filters": 4096}`, []string{"more than the"}},
		{"neural_network", `{"learning_rate": 0}`, []string{"learning_rate", "(0, 1]"}},
		{"neural_network", `{"output_size": 1}`, []string{"output_size", "2..65536"}},
		{"neural_network", `{"epochs": 2, "batch_size": 8}`, nil},
		{"sorting", `{}`, []string{`unknown job type "sorting"`, "image_processing, matrix_multiply, neural_network, vector_addition"}},
	}
	for _, tt := range tests {
		p, err := r.Decode(tt.kind, []byte(tt.params))
		if tt.wantErr == nil {
			if err != nil {
				t.Errorf("Decode(%s, %s): %v", tt.kind, tt.params, err)
			} else if p.Kind() != tt.kind {
				t.Errorf("Decode(%s): kind %s", tt.kind, p.Kind())
			}
			continue
		}
		if err == nil {
			t.Errorf("Decode(%s, %s) succeeded, want error with %q", tt.kind, tt.params, tt.wantErr)
			continue
		}
		var pe *kernels.ParamError
		var ue *kernels.UnknownKindError
		if !errors.As(err, &pe) && !errors.As(err, &ue) {
			t.Errorf("Decode(%s, %s): %v is not a param error", tt.kind, tt.params, err)
		}
		for _, want := range tt.wantErr {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Decode(%s, %s) = %q, want it to mention %q", tt.kind, tt.params, err, want)
			}
		}
	}
}

func TestDecodeDefaults(t *testing.T) {
	r := kernels.Default()
	p, err := r.Decode("neural_network", []byte(`{"batch_size": 32}`))
	if err != nil {
		t.Fatal(err)
	}
	nn := p.(*kernels.NeuralNetwork)
	if nn.Samples != 3200 || nn.Epochs != 5 || nn.HiddenSize != 256 || nn.LearningRate != 1e-3 {
		t.Errorf("defaults not applied: %+v", nn)
	}
	p, _ = r.Decode("matrix_multiply", nil)
	if mm := p.(*kernels.MatrixMultiply); mm.Size != 1000 || mm.Iterations != 10 {
		t.Errorf("matrix_multiply defaults %+v, want size 1000 iterations 10", mm)
	}
	p, _ = r.Decode("vector_addition", nil)
	if va := p.(*kernels.VectorAddition); va.Size != 10_000_000 || va.Iterations != 100 {
		t.Errorf("vector_addition defaults %+v", va)
	}
	p, _ = r.Decode("image_processing", nil)
	if ip := p.(*kernels.ImageProcessing); ip.BatchSize != 32 || ip.ImageSize != 224 || ip.Iterations != 50 {
		t.Errorf("image_processing defaults %+v", ip)
	}
}

func TestRegistryRejectsDuplicates(t *testing.T) {
	s, _ := kernels.Default().Spec("matrix_multiply")
	if _, err := kernels.NewRegistry(s, s); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Errorf("duplicate kind: err = %v", err)
	}
	bad := s
	bad.Kind = "other"
	if _, err := kernels.NewRegistry(bad); err == nil {
		t.Error("a spec whose params report another kind was accepted")
	}
}

func TestWorkEstimates(t *testing.T) {
	r := kernels.Default()
	for _, kind := range r.Kinds() {
		p, _ := r.Decode(kind, nil)
		w := p.Work()
		if w.FLOPs <= 0 || w.Bytes <= 0 || w.MemBytes <= 0 || w.Steps <= 0 {
			t.Errorf("%s: incomplete estimate %+v", kind, w)
		}
	}
	mm := &kernels.MatrixMultiply{Size: 1000, Iterations: 10}
	if got := mm.Work().FLOPs; got != 2e10 {
		t.Errorf("matrix_multiply 1000x10 FLOPs = %g, want 2e10", got)
	}
	va := &kernels.VectorAddition{Size: 10_000_000, Iterations: 100}
	if got := va.Work().Bytes; got != 12e9 {
		t.Errorf("vector_addition bytes = %g, want 1.2e10", got)
	}
}
