//go:build cuda

package cuda

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
	"github.com/gpujobs/gpujobs/kernels/kernelstest"
)

// These tests need a GPU. On a machine without one the test binary does not get here: package
// probe prints why and exits 0 before gorgonia.org/cu's init would end the process. CI only
// compiles them (go test -tags cuda -c); on a GPU node, build them with `make build-gpu` and run
// bin/cuda.test.

// newRunner opens a runner as the worker would, honouring GPUJOBS_CUBLAS and GPUJOBS_KERNEL_DIR,
// so that scripts/gpu-check.sh can point the tests at PyTorch's cuBLAS or at rebuilt kernels.
func newRunner(t *testing.T, o Options) *Runner {
	t.Helper()
	if o.CuBLAS == "" {
		o.CuBLAS = os.Getenv("GPUJOBS_CUBLAS")
	}
	if o.KernelDir == "" {
		o.KernelDir = os.Getenv(ptx.KernelDirEnv)
	}
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

// TestConformanceCuBLAS skips without cuBLAS, unless GPUJOBS_CUBLAS names one: then not loading
// it is a failure, so that a run meant to test cuBLAS cannot pass without doing so.
func TestConformanceCuBLAS(t *testing.T) {
	r := newRunner(t, Options{})
	impl, why := r.GEMM()
	if impl != GEMMCuBLAS {
		if lib := os.Getenv("GPUJOBS_CUBLAS"); lib != "" {
			t.Fatalf("GPUJOBS_CUBLAS=%s but cuBLAS is not used: %s", lib, why)
		}
		t.Skipf("no cuBLAS: %s", why)
	}
	t.Logf("cuBLAS: %s", why)
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

// An error that leaves the device usable (out of memory) or whose context a reset recovers
// (a device-side assert) fails its job with the error's name, and the next job runs and is right.
func TestFaultsLeaveRunnerServing(t *testing.T) {
	r := newRunner(t, Options{})
	ctx := context.Background()
	for _, fault := range []string{FaultOutOfMemory, FaultAssert} {
		err := r.ProvokeFault(ctx, fault)
		if err == nil || !strings.Contains(err.Error(), FaultError[fault]) {
			t.Errorf("%s: error %v, want %s", fault, err, FaultError[fault])
		}
		if fault == FaultAssert {
			if st := r.Health()[0]; st.State != pool.Broken {
				t.Errorf("after %s the device is %v, want broken (reset before the next job)", fault, st.State)
			}
		}
		checkSgemm(t, r, "after "+fault)
		if st := r.Health()[0]; st.State != pool.Healthy {
			t.Errorf("after %s and a job: device %v (%v)", fault, st.State, st.Cause)
		}
	}
}

func checkSgemm(t *testing.T, r *Runner, when string) {
	t.Helper()
	p := &builtin.MatrixMultiply{Size: 64, Iterations: 2, Seed: 1}
	out, err := r.Run(context.Background(), p, func(jobs.Progress) {})
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	a, b := p.Inputs()
	want := make([]float32, 64*64)
	kernels.Sgemm(64, a, b, want)
	if got := out.Metrics["checksum"]; math.Abs(got-kernels.Checksum(want)) > 1e-2 {
		t.Errorf("%s: checksum %g, want %g", when, got, kernels.Checksum(want))
	}
}

// An illegal address is an error CUDA says only a new process recovers from: the device is marked
// dead, Dead closes for the worker to exit, and the next job is refused at once, retryably. It
// runs in a child process (this test binary again), which the fault leaves unusable; the parent,
// a fresh process, then uses the GPU as the restarted worker would.
func TestIllegalAddressKillsTheDevice(t *testing.T) {
	if os.Getenv("GPUJOBS_FAULT_CHILD") == "1" {
		r := newRunner(t, Options{})
		err := r.ProvokeFault(context.Background(), FaultIllegalAddress)
		if err == nil || !strings.Contains(err.Error(), FaultError[FaultIllegalAddress]) {
			t.Fatalf("error %v, want %s", err, FaultError[FaultIllegalAddress])
		}
		select {
		case <-r.Dead():
		default:
			t.Fatal("Dead not closed after an illegal address")
		}
		if st := r.Health()[0]; st.State != pool.Dead {
			t.Fatalf("device %v, want dead", st.State)
		}
		_, err = r.Run(context.Background(), &builtin.MatrixMultiply{Size: 8, Iterations: 1, Seed: 1}, func(jobs.Progress) {})
		if !errors.Is(err, pool.ErrDraining) {
			t.Fatalf("next job: %v, want ErrDraining", err)
		}
		t.Logf("dead: %v; next job: %v", r.DeadErr(), err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIllegalAddressKillsTheDevice$", "-test.v")
	cmd.Env = append(os.Environ(), "GPUJOBS_FAULT_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	checkSgemm(t, newRunner(t, Options{}), "in a fresh process after the fault")
}

// Small jobs share the GPU: with a limit of 4, four jobs that each need little memory run at
// the same time (each waits in its first progress report until all four have reported).
func TestSmallJobsShareTheGPU(t *testing.T) {
	r := newRunner(t, Options{GEMM: GEMMPTX, JobsPerGPU: 4})
	const n = 4
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			first := true
			_, err := r.Run(context.Background(), &builtin.VectorAddition{Size: 1 << 20, Iterations: 20, Seed: 1}, func(jobs.Progress) {
				if !first {
					return
				}
				first = false
				mu.Lock()
				arrived++
				if arrived == n {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
				case <-time.After(30 * time.Second):
				}
			})
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	default:
		t.Fatalf("only %d of %d jobs ran at once", arrived, n)
	}
}

// GPUJOBS_KERNEL_DIR loads the kernels from a directory: here the embedded PTX written out.
func TestKernelDir(t *testing.T) {
	dir := t.TempDir()
	for _, m := range ptx.Modules {
		text, err := ptx.PTX(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m.Name+".ptx"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := newRunner(t, Options{GEMM: GEMMPTX, KernelDir: dir})
	if got := r.devices[0].loaded; got != dir+" (ptx)" {
		t.Errorf("loaded %q, want %q", got, dir+" (ptx)")
	}
	checkSgemm(t, r, "with kernels from "+dir)
}

// With NVML, a job's result carries the device's utilisation and memory.
func TestTelemetry(t *testing.T) {
	r := newRunner(t, Options{})
	on, detail := r.Telemetry()
	if !on {
		t.Skipf("no NVML: %s", detail)
	}
	out, err := r.Run(context.Background(), &builtin.MatrixMultiply{Size: 2048, Iterations: 50, Seed: 1}, func(jobs.Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	tm := out.Telemetry
	if tm == nil || tm.Samples < 2 || tm.MemoryPeak <= 0 || tm.UtilizationPeak < tm.UtilizationMean {
		t.Fatalf("telemetry %+v (%s)", tm, detail)
	}
	t.Logf("telemetry %+v", *tm)
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
