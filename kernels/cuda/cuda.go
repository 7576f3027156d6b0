//go:build cuda

// Package cuda runs the job types of package kernels on NVIDIA GPUs through the CUDA driver API
// (gorgonia.org/cu), with kernels loaded from the embedded PTX/fatbin of package ptx and, for
// SGEMM, cuBLAS when the node has it (package cublas, loaded at run time).
//
// Each job type has its file here, named like its CPU implementation in kernels; the .cu sources
// of their kernels sit beside them. A job uses the same seeded inputs as the CPU implementation
// and reports the same metrics, computed from the same Work estimate, so kernels/kernelstest and
// gpucheck compare the two directly. Data stays on the device for the whole job; kernel time is
// measured with CUDA events (ProcessingTime) and host↔device copies separately (TransferTime).
//
// The package must not import Temporal or anything of the worker: the GPU worker binary adapts
// Runner to activities.Runner. It is built only with the cuda tag, and only into binaries that
// start on GPU machines: gorgonia.org/cu initialises the driver when the process starts (see
// package probe for how a machine without a GPU gets one clear line instead).
package cuda

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	_ "github.com/gpujobs/gpujobs/kernels/cuda/probe" // must initialise before gorgonia.org/cu
)

// GEMM implementations.
const (
	GEMMAuto   = "auto"   // cuBLAS when it loads, else PTX
	GEMMCuBLAS = "cublas" // cuBLAS or fail
	GEMMPTX    = "ptx"    // the package's own SGEMM kernels
)

// reserveBytes is kept free on every device for the context, module code and cuBLAS workspaces.
const reserveBytes = 512 << 20

// Options configure a Runner; zero values mean the documented defaults.
type Options struct {
	// GEMM is auto (default), cublas or ptx.
	GEMM string
	// CuBLAS, when set, is the only cuBLAS tried: a soname or a file (GPUJOBS_CUBLAS).
	CuBLAS string
	// Devices are the ordinals to use; nil means every device the driver shows (mind
	// CUDA_VISIBLE_DEVICES).
	Devices []int
	// Impls are the GPU implementations, by kind; nil means Builtin().
	Impls *jobs.Impls[Impl]
}

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Index             int
	Name              string // e.g. "NVIDIA H100 80GB HBM3"
	ComputeCapability string // e.g. "9.0"
	Memory            int64  // total bytes
	SMs               int
}

// Runner runs jobs on this machine's GPUs, each job on the least busy device.
type Runner struct {
	impls   *jobs.Impls[Impl]
	devices []*device
	gemm    string
	blas    *cublas.Library // nil when not loaded
	blasVer int             // cuBLAS's version number, e.g. 130001
	blasErr error           // why cuBLAS is not used, when it is not

	mu   sync.Mutex
	busy []int // running jobs per device
}

// NewRunner opens every device (or o.Devices): retains its primary context, loads the kernel
// modules into it, and loads cuBLAS unless o.GEMM is ptx.
func NewRunner(o Options) (*Runner, error) {
	switch o.GEMM {
	case "":
		o.GEMM = GEMMAuto
	case GEMMAuto, GEMMCuBLAS, GEMMPTX:
	default:
		return nil, fmt.Errorf("gemm %q: use auto, cublas or ptx", o.GEMM)
	}
	n, err := cu.NumDevices()
	if err != nil {
		return nil, check("cuDeviceGetCount", err)
	}
	ordinals := o.Devices
	if ordinals == nil {
		for i := 0; i < n; i++ {
			ordinals = append(ordinals, i)
		}
	}
	if len(ordinals) == 0 {
		return nil, errors.New("no CUDA device found: start a CPU worker instead")
	}
	if o.Impls == nil {
		o.Impls = Builtin()
	}
	r := &Runner{gemm: o.GEMM, impls: o.Impls}
	for _, i := range ordinals {
		if i < 0 || i >= n {
			r.Close()
			return nil, fmt.Errorf("GPU %d does not exist: this machine has %d (0..%d)", i, n, n-1)
		}
		d, err := openDevice(i)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.devices = append(r.devices, d)
	}
	r.busy = make([]int, len(r.devices))
	if o.GEMM != GEMMPTX {
		r.blas, r.blasVer, r.blasErr = r.loadBLAS(o.CuBLAS)
		if r.blasErr != nil && o.GEMM == GEMMCuBLAS {
			r.Close()
			return nil, r.blasErr
		}
	}
	return r, nil
}

// loadBLAS loads cuBLAS and proves it usable by creating a handle on the first device: a library
// newer than the driver loads fine and fails only there.
func (r *Runner) loadBLAS(override string) (*cublas.Library, int, error) {
	lib, err := cublas.Load(override)
	if err != nil {
		return nil, 0, err
	}
	d := r.devices[0]
	leave, err := d.enter()
	if err != nil {
		return nil, 0, err
	}
	defer leave()
	h, err := lib.NewHandle()
	if err != nil {
		return nil, 0, fmt.Errorf("%s loaded but unusable: %w", lib.Path, err)
	}
	defer h.Destroy() //nolint:errcheck // a probe handle
	v, err := h.Version()
	if err != nil {
		return nil, 0, fmt.Errorf("%s loaded but unusable: %w", lib.Path, err)
	}
	return lib, v, nil
}

// Close releases every device. Jobs must have finished.
func (r *Runner) Close() error {
	var errs []error
	for _, d := range r.devices {
		errs = append(errs, d.close())
	}
	r.devices = nil
	return errors.Join(errs...)
}

// Devices describes the GPUs this runner uses.
func (r *Runner) Devices() []DeviceInfo {
	infos := make([]DeviceInfo, len(r.devices))
	for i, d := range r.devices {
		infos[i] = d.info
	}
	return infos
}

// Slots is the number of jobs the runner is meant to run at once: one per GPU.
func (r *Runner) Slots() int { return len(r.devices) }

// Name describes the runner's devices in one string, e.g. "NVIDIA H100 80GB HBM3" or
// "2 × NVIDIA H100 80GB HBM3".
func (r *Runner) Name() string {
	counts := map[string]int{}
	var names []string
	for _, d := range r.devices {
		if counts[d.info.Name] == 0 {
			names = append(names, d.info.Name)
		}
		counts[d.info.Name]++
	}
	for i, n := range names {
		if counts[n] > 1 {
			names[i] = fmt.Sprintf("%d × %s", counts[n], n)
		}
	}
	return strings.Join(names, ", ")
}

// GEMM says which SGEMM jobs use by default, and why cuBLAS is not used when it is not.
func (r *Runner) GEMM() (impl, detail string) {
	if r.blas != nil {
		return GEMMCuBLAS, fmt.Sprintf("%s, cuBLAS %d.%d.%d", r.blas.Path, r.blasVer/10000, r.blasVer/100%100, r.blasVer%100)
	}
	if r.blasErr != nil {
		return GEMMPTX, r.blasErr.Error()
	}
	return GEMMPTX, "gemm=ptx requested"
}

// Fits returns a *MemoryError when a job's memory estimate exceeds what the largest device can
// hold, so it can never run here.
func (r *Runner) Fits(w jobs.Work) error {
	var best *device
	for _, d := range r.devices {
		if best == nil || d.usable() > best.usable() {
			best = d
		}
	}
	if best == nil {
		return errors.New("no GPU")
	}
	if w.MemBytes > best.usable() {
		return &MemoryError{Need: w.MemBytes, Have: best.usable(), Device: best.label()}
	}
	return nil
}

// RunOptions adjust one run, for gpucheck.
type RunOptions struct {
	// GEMM overrides the runner's SGEMM choice for this job: cublas or ptx.
	GEMM string
	// Result, when not nil, receives the job's output buffer: C, the conv output, or c = a + b.
	Result *[]float32
}

// Run runs one job on the least busy GPU.
func (r *Runner) Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
	return r.RunWith(ctx, p, report, RunOptions{})
}

// RunWith runs one job with per-run options.
func (r *Runner) RunWith(ctx context.Context, p jobs.Params, report jobs.Reporter, o RunOptions) (jobs.Output, error) {
	if err := p.Validate(); err != nil {
		return jobs.Output{}, err
	}
	impl, err := r.impls.Lookup(p.Kind())
	if err != nil {
		return jobs.Output{}, err
	}
	blas, err := r.gemmFor(o.GEMM)
	if err != nil {
		return jobs.Output{}, err
	}
	i := r.acquire()
	defer r.release(i)
	d := r.devices[i]
	out, err := d.run(ctx, impl, p, report, blas, o.Result)
	if err != nil {
		return jobs.Output{}, fmt.Errorf("%s on %s: %w", p.Kind(), d.label(), err)
	}
	out.Device = &jobs.DeviceInfo{WorkerType: jobs.WorkerTypeGPU, Name: d.info.Name, Index: d.info.Index,
		ComputeCapability: d.info.ComputeCapability, Memory: d.info.Memory}
	out.Modules = d.loaded
	return out, nil
}

// gemmFor returns the cuBLAS library a job uses, or nil for the PTX kernels.
func (r *Runner) gemmFor(override string) (*cublas.Library, error) {
	want := r.gemm
	if override != "" {
		want = override
	}
	switch want {
	case GEMMPTX:
		return nil, nil
	case GEMMCuBLAS:
		if r.blas == nil {
			_, why := r.GEMM()
			return nil, fmt.Errorf("cuBLAS requested but not available: %s", why)
		}
		return r.blas, nil
	case GEMMAuto:
		return r.blas, nil
	}
	return nil, fmt.Errorf("gemm %q: use auto, cublas or ptx", want)
}

func (r *Runner) acquire() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	best := 0
	for i, b := range r.busy {
		if b < r.busy[best] {
			best = i
		}
	}
	r.busy[best]++
	return best
}

func (r *Runner) release(i int) {
	r.mu.Lock()
	r.busy[i]--
	r.mu.Unlock()
}

// stopped is kernels' cancellation error: the context's error, saying at which step it stopped.
func stopped(ctx context.Context, kind string, step, total int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s stopped after step %d of %d: %w", kind, step, total, err)
	}
	return nil
}

// lockThread pins the calling goroutine to its OS thread: a CUDA context is current per thread.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
