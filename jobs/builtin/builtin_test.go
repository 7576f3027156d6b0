package builtin_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

func TestDecode(t *testing.T) {
	r := builtin.Kinds()
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
		{"matrix_multiply", `{"size": 10} {"size": 20}`, []string{"params", "trailing data"}},
		{"matrix_multiply", `{"size": 10}}`, []string{"params", "trailing data"}},
		{"vector_addition", `{"size": 1e3}`, []string{"size", "expected int"}},
		{"vector_addition", `{"size": 2000000000}`, []string{"size", "1..1073741824"}},
		{"vector_addition", `{"iterations": -5}`, []string{"iterations"}},
		{"image_processing", `{"kernel_size": 4}`, []string{"kernel_size", "odd"}},
		{"image_processing", `{"image_size": 0}`, []string{"image_size", "1..8192"}},
		{"image_processing", `{"batch_size": 4096, "image_size": 8192, "filters": 4096}`, []string{"more than the"}},
		{"neural_network", `{"learning_rate": 0}`, []string{"learning_rate", "(0, 1]"}},
		{"neural_network", `{"output_size": 1}`, []string{"output_size", "2..65536"}},
		{"neural_network", `{"epochs": 2, "batch_size": 8}`, nil},
		{"command", `{"argv": ["python3", "train.py"], "resources": {"gpus": 1, "gpu_memory": "16GiB", "memory": "4GiB"}, "outputs": ["*.pt", "plots/**"], "inputs": [{"job": "job-0123456789ab", "name": "*.csv"}], "timeout": "2h"}`, nil},
		{"command", `{}`, []string{"argv", "empty"}},
		{"command", `{"argv": ["sh"], "env": {"GPUJOBS_JOB_ID": "x"}}`, []string{"env", "GPUJOBS_JOB_ID is set by the worker"}},
		{"command", `{"argv": ["sh"], "env": {"CUDA_VISIBLE_DEVICES": "3"}}`, []string{"env", "CUDA_VISIBLE_DEVICES is set by the worker"}},
		{"command", `{"argv": ["sh"], "env": {"LD_PRELOAD": "/tmp/x.so"}}`, []string{"env", "LD_PRELOAD is not allowed"}},
		{"command", `{"argv": ["sh"], "resources": {"gpus": 65}}`, []string{"resources.gpus", "0..64"}},
		{"command", `{"argv": ["sh"], "resources": {"memory": "1MiB"}}`, []string{"resources.memory", "16MiB..1TiB"}},
		{"command", `{"argv": ["sh"], "resources": {"gpu_memory": "8GiB"}}`, []string{"resources.gpu_memory", "only with resources.gpus > 0"}},
		{"command", `{"argv": ["sh"], "timeout": "900h"}`, []string{"timeout", "out of range"}},
		{"command", `{"argv": ["sh"], "outputs": ["../etc/passwd"]}`, []string{"outputs", "without .."}},
		{"command", `{"argv": ["sh"], "outputs": ["/abs"]}`, []string{"outputs", "relative"}},
		{"command", `{"argv": ["sh"], "inputs": [{"job": ""}]}`, []string{"inputs"}},
		{"sorting", `{}`, []string{`unknown job type "sorting"`, "command, image_processing, matrix_multiply, neural_network, vector_addition"}},
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
		var pe *jobs.ParamError
		var ue *jobs.UnknownKindError
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
	r := builtin.Kinds()
	p, err := r.Decode("neural_network", []byte(`{"batch_size": 32}`))
	if err != nil {
		t.Fatal(err)
	}
	nn := p.(*builtin.NeuralNetwork)
	if nn.Samples != 3200 || nn.Epochs != 5 || nn.HiddenSize != 256 || nn.LearningRate != 1e-3 {
		t.Errorf("defaults not applied: %+v", nn)
	}
	p, _ = r.Decode("matrix_multiply", nil)
	if mm := p.(*builtin.MatrixMultiply); mm.Size != 1000 || mm.Iterations != 10 {
		t.Errorf("matrix_multiply defaults %+v, want size 1000 iterations 10", mm)
	}
	p, _ = r.Decode("vector_addition", nil)
	if va := p.(*builtin.VectorAddition); va.Size != 10_000_000 || va.Iterations != 100 {
		t.Errorf("vector_addition defaults %+v", va)
	}
	p, _ = r.Decode("image_processing", nil)
	if ip := p.(*builtin.ImageProcessing); ip.BatchSize != 32 || ip.ImageSize != 224 || ip.Iterations != 50 {
		t.Errorf("image_processing defaults %+v", ip)
	}
}

func TestRegistryRejectsDuplicates(t *testing.T) {
	s, _ := builtin.Kinds().Spec("matrix_multiply")
	if _, err := jobs.NewKinds(s, s); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Errorf("duplicate kind: err = %v", err)
	}
	if _, err := builtin.Kinds().With(s); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Errorf("a built-in registered again: err = %v", err)
	}
	bad := s
	bad.Kind = "other"
	if _, err := jobs.NewKinds(bad); err == nil {
		t.Error("a spec whose params report another kind was accepted")
	}
}

func TestWorkEstimates(t *testing.T) {
	r := builtin.Kinds()
	for _, kind := range r.Names() {
		if kind == builtin.CommandKind {
			continue // a program's cost is its own: it declares only what it needs
		}
		p, _ := r.Decode(kind, nil)
		w := p.Work()
		if w.FLOPs <= 0 || w.Bytes <= 0 || w.MemBytes <= 0 || w.Steps <= 0 {
			t.Errorf("%s: incomplete estimate %+v", kind, w)
		}
	}
	mm := &builtin.MatrixMultiply{Size: 1000, Iterations: 10}
	if got := mm.Work().FLOPs; got != 2e10 {
		t.Errorf("matrix_multiply 1000x10 FLOPs = %g, want 2e10", got)
	}
	va := &builtin.VectorAddition{Size: 10_000_000, Iterations: 100}
	if got := va.Work().Bytes; got != 12e9 {
		t.Errorf("vector_addition bytes = %g, want 1.2e10", got)
	}
}
