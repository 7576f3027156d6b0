package estimate

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

func gemm(n int) jobs.Work { return (&builtin.MatrixMultiply{Size: n, Iterations: 10}).Work() }

func TestDefaultsBeforeAnyData(t *testing.T) {
	m := NewModel()
	p := m.Predict("matrix_multiply", CPU, gemm(1000))
	// 2e10 FLOP at the default 20 GFLOP/s, plus 1 ms overhead.
	if want := 1001 * time.Millisecond; p.Processing != want || p.Total != want || p.Samples != 0 {
		t.Errorf("prediction %+v, want %s from the defaults", p, want)
	}
	g := m.Predict("matrix_multiply", GPU, gemm(1000))
	if g.Transfer <= 0 || g.Total <= g.Processing {
		t.Errorf("GPU prediction %+v: want transfers and setup in the total", g)
	}
}

func TestLearnsAConstantFactor(t *testing.T) {
	m := NewModel()
	// This CPU runs GEMM at 100 GFLOP/s, five times the default.
	for _, n := range []int{1000, 1000, 1000} {
		w := gemm(n)
		m.Observe(Observation{JobType: "matrix_multiply", Device: CPU, Work: w, Processing: w.FLOPs / 100e9})
	}
	p := m.Predict("matrix_multiply", CPU, gemm(1000))
	if got, want := p.Processing.Seconds(), 0.2; math.Abs(got-want)/want > 0.01 {
		t.Errorf("learned %.4fs, want %.4fs", got, want)
	}
	if p.Samples != 3 {
		t.Errorf("samples %d", p.Samples)
	}
	// Other job types and devices are not affected.
	if p := m.Predict("matrix_multiply", GPU, gemm(1000)); p.Samples != 0 {
		t.Errorf("GPU learned from CPU results: %+v", p)
	}
}

func TestLearnsASizeDependence(t *testing.T) {
	m := NewModel()
	// Efficiency grows with size: time ∝ flops^0.8 (small GEMMs run below peak).
	actual := func(w jobs.Work) float64 { return 1e-8 * math.Pow(w.FLOPs, 0.8) }
	for _, n := range []int{100, 200, 400, 800, 1600, 100, 400, 1600} {
		w := gemm(n)
		m.Observe(Observation{JobType: "matrix_multiply", Device: CPU, Work: w, Processing: actual(w)})
	}
	for _, n := range []int{150, 1000, 3000} {
		w := gemm(n)
		got := m.Predict("matrix_multiply", CPU, w).Processing.Seconds()
		if err := math.Abs(got-actual(w)) / actual(w); err > 0.02 {
			t.Errorf("n=%d: predicted %.4gs, actual %.4gs (%.0f%% off)", n, got, actual(w), 100*err)
		}
	}
}

func TestTinyVectorAdditionPrefersCPUAndLargeGEMMPrefersGPU(t *testing.T) {
	m := NewModel()
	// Measured: CPU 150 GFLOP/s GEMM, 20 GB/s streaming; GPU 40 TFLOP/s, 2 TB/s, PCIe 20 GB/s.
	for _, n := range []int{1000, 2000, 4000} {
		w := gemm(n)
		m.Observe(Observation{JobType: "matrix_multiply", Device: CPU, Work: w, Processing: w.FLOPs / 150e9})
		m.Observe(Observation{JobType: "matrix_multiply", Device: GPU, Work: w, Processing: w.FLOPs / 40e12, Transfer: float64(w.TransferBytes) / 20e9})
	}
	for _, n := range []int{1_000_000, 10_000_000} {
		w := (&builtin.VectorAddition{Size: n, Iterations: 100}).Work()
		m.Observe(Observation{JobType: "vector_addition", Device: CPU, Work: w, Processing: w.Bytes / 20e9})
		m.Observe(Observation{JobType: "vector_addition", Device: GPU, Work: w, Processing: w.Bytes / 2e12, Transfer: float64(w.TransferBytes) / 20e9})
	}
	tiny := (&builtin.VectorAddition{Size: 1000, Iterations: 10}).Work()
	if c, g := m.Predict("vector_addition", CPU, tiny), m.Predict("vector_addition", GPU, tiny); c.Total >= g.Total {
		t.Errorf("tiny vector addition: CPU %s vs GPU %s, want the CPU faster", c.Total, g.Total)
	}
	big := gemm(4000)
	if c, g := m.Predict("matrix_multiply", CPU, big), m.Predict("matrix_multiply", GPU, big); g.Total >= c.Total {
		t.Errorf("4000² GEMM: CPU %s vs GPU %s, want the GPU faster", c.Total, g.Total)
	}
}

func TestWindowAndPersistence(t *testing.T) {
	m := NewModel()
	m.Window = 4
	for i := 0; i < 10; i++ {
		m.Observe(Observation{JobType: "vector_addition", Device: CPU, Work: jobs.Work{Bytes: 1e9}, Processing: float64(i + 1)})
	}
	if p := m.Predict("vector_addition", CPU, jobs.Work{Bytes: 1e9}); p.Samples != 4 {
		t.Errorf("kept %d observations, want the window of 4", p.Samples)
	}
	m.Observe(Observation{JobType: "x", Device: "tpu", Processing: 1}) // ignored
	m.Observe(Observation{JobType: "x", Device: CPU, Processing: 0})   // ignored
	path := filepath.Join(t.TempDir(), "sub", "estimates.json")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	m2 := NewModel()
	if err := m2.Load(path); err != nil {
		t.Fatal(err)
	}
	if a, b := m.Predict("vector_addition", CPU, jobs.Work{Bytes: 1e9}), m2.Predict("vector_addition", CPU, jobs.Work{Bytes: 1e9}); a != b {
		t.Errorf("reloaded model predicts %+v, want %+v", b, a)
	}
	if err := NewModel().Load(filepath.Join(t.TempDir(), "missing.json")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	if mean, ok := m2.MeanJob(CPU); !ok || mean != 8500*time.Millisecond {
		t.Errorf("mean processing %s %v, want 8.5s", mean, ok)
	}
}

// The GPUs' memory comes from results and survives a restart with the observations.
func TestDeviceMemory(t *testing.T) {
	m := NewModel()
	if got := m.DeviceMemory(GPU); got != 0 {
		t.Fatalf("empty model: %d", got)
	}
	m.Observe(Observation{JobType: "x", Device: GPU, Processing: 1, DeviceMemory: 40 << 30})
	m.Observe(Observation{JobType: "y", Device: GPU, Processing: 1, DeviceMemory: 80 << 30})
	m.Observe(Observation{JobType: "y", Device: CPU, Processing: 1, DeviceMemory: 500 << 30})
	path := filepath.Join(t.TempDir(), "estimates.json")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	l := NewModel()
	if err := l.Load(path); err != nil {
		t.Fatal(err)
	}
	if got := l.DeviceMemory(GPU); got != 80<<30 {
		t.Errorf("GPU memory %d after a reload, want the largest GPU's 80 GiB", got)
	}
}

// A job's occupancy beyond its kernel (input generation, allocation) is part of what it costs
// its worker: the prediction and the mean job include it, and the busy workers' dispatch gap
// is learned apart, ignoring idle pauses.
func TestOverheadAndGap(t *testing.T) {
	m := NewModel()
	w := jobs.Work{FLOPs: 1e9}
	for i := 0; i < 5; i++ {
		m.Observe(Observation{JobType: "k", Device: CPU, Work: w, Processing: 2, Occupancy: 3})
	}
	if p := m.Predict("k", CPU, w); p.Total != 3*time.Second {
		t.Errorf("total %s, want 3s (2s kernel + 1s overhead)", p.Total)
	}
	if mean, _ := m.MeanJob(CPU); mean != 3*time.Second {
		t.Errorf("mean job %s, want 3s", mean)
	}
	if g := m.Gap(CPU); g != 0 {
		t.Errorf("gap before any %s, want 0", g)
	}
	for _, g := range []float64{0.1, 0.2, 0.3, 60, -1} {
		m.ObserveGap(CPU, g)
	}
	if g := m.Gap(CPU); g != 200*time.Millisecond {
		t.Errorf("gap %s, want the median of the busy gaps, 200ms", g)
	}
}
