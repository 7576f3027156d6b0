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

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	"github.com/gpujobs/gpujobs/kernels/cuda/nvml"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	_ "github.com/gpujobs/gpujobs/kernels/cuda/probe" // must initialise before gorgonia.org/cu
)

// GEMM implementations.
const (
	GEMMAuto   = "auto"   // cuBLAS when it loads, else PTX
	GEMMCuBLAS = "cublas" // cuBLAS or fail
	GEMMPTX    = "ptx"    // the package's own SGEMM kernels
)

// reserveBytes is kept free on every device for the context, module code and cuBLAS workspaces.
const reserveBytes = pool.ContextReserve

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
	// JobsPerGPU is the most jobs that share one GPU at once, while their memory estimates fit
	// (GPU_JOBS_PER_GPU); 0 means pool.DefaultJobsPerDevice, 1 one job per GPU.
	JobsPerGPU int
	// KernelDir, when set, is a directory of NAME.fatbin/NAME.ptx files loaded instead of the
	// embedded kernels (GPUJOBS_KERNEL_DIR).
	KernelDir string
	// NVML is the management library to sample utilisation and memory with: "" searches
	// libnvidia-ml.so.1, "off" samples nothing (GPUJOBS_NVML).
	NVML string
}

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Index             int
	Name              string // e.g. "NVIDIA H100 80GB HBM3"
	ComputeCapability string // e.g. "9.0"
	Memory            int64  // total bytes
	SMs               int
	PCIBusID          string // e.g. "0000:3b:00.0"
}

// Runner runs jobs on this machine's GPUs, each job on the least busy device.
type Runner struct {
	impls   *jobs.Impls[Impl]
	devices []*device
	gemm    string
	blas    *cublas.Library // nil when not loaded
	blasVer int             // cuBLAS's version number, e.g. 130001
	blasErr error           // why cuBLAS is not used, when it is not
	nvml    *nvml.Library   // nil when not loaded
	nvmlErr error

	pool *pool.Pool
}

// NewRunner opens every device (or o.Devices): retains its primary context, loads the kernel
// modules into it, and loads cuBLAS unless o.GEMM is ptx, and NVML unless o.NVML is off.
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
		d, err := openDevice(i, o.KernelDir)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.devices = append(r.devices, d)
	}
	var devs []pool.Device
	for _, d := range r.devices {
		devs = append(devs, pool.Device{Name: d.label(), Capacity: d.usable()})
	}
	r.pool = pool.New(devs, pool.Options{JobsPerDevice: o.JobsPerGPU}, pool.Hooks{
		Free:     func(i int) (int64, error) { return r.devices[i].memFree() },
		Classify: severity,
	})
	r.openNVML(o.NVML)
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

// openNVML loads NVML and finds each device in it; without it (or any device) jobs run without
// telemetry, and Telemetry says why.
func (r *Runner) openNVML(path string) {
	if path == "off" {
		r.nvmlErr = errors.New("GPUJOBS_NVML=off")
		return
	}
	lib, err := nvml.Load(path)
	if err != nil {
		r.nvmlErr = err
		return
	}
	for _, d := range r.devices {
		dev, err := lib.DeviceByPCI(d.info.PCIBusID)
		if err != nil {
			r.nvmlErr = fmt.Errorf("%s: %w", d.label(), err)
			continue
		}
		d.sampler = dev
	}
	r.nvml = lib
}

// Telemetry says whether jobs' results carry NVML's utilisation and memory figures, and why not.
func (r *Runner) Telemetry() (on bool, detail string) {
	if r.nvml == nil {
		return false, r.nvmlErr.Error()
	}
	v, _ := r.nvml.DriverVersion()
	detail = fmt.Sprintf("%s, driver %s", r.nvml.Path, v)
	if r.nvmlErr != nil {
		detail += "; " + r.nvmlErr.Error()
	}
	return true, detail
}

// Close releases every device. Jobs must have finished.
func (r *Runner) Close() error {
	var errs []error
	for _, d := range r.devices {
		errs = append(errs, d.close())
	}
	r.devices = nil
	if r.nvml != nil {
		errs = append(errs, r.nvml.Close())
	}
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

// Slots is the number of jobs the runner is meant to run at once: the per-GPU job limit times
// the GPUs. Jobs beyond what fits in memory wait in Run for room.
func (r *Runner) Slots() int { return r.pool.Slots() }

// Kernels says where the first device's kernels were loaded from: fatbin, ptx (the embedded
// ones) or the GPUJOBS_KERNEL_DIR directory and the kinds of file found there.
func (r *Runner) Kernels() string { return r.devices[0].loaded }

// JobsPerGPU is the per-GPU job limit in force.
func (r *Runner) JobsPerGPU() int { return r.pool.JobsPerDevice() }

// Dead is closed when a GPU is unusable until the process restarts (CUDA documents that for
// errors like CUDA_ERROR_ILLEGAL_ADDRESS): the worker should stop taking jobs, let the running
// ones end, and exit non-zero. Jobs offered meanwhile fail at once, retryably.
func (r *Runner) Dead() <-chan struct{} { return r.pool.Dead() }

// DeadErr says which GPU died and why, once Dead is closed.
func (r *Runner) DeadErr() error { return r.pool.Err() }

// Health describes every device's state, running jobs and reserved memory.
func (r *Runner) Health() []pool.Status { return r.pool.Status() }

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
func (r *Runner) Fits(w jobs.Work) error { return r.pool.Fits(w.MemBytes) }

// RunOptions adjust one run, for gpucheck.
type RunOptions struct {
	// GEMM overrides the runner's SGEMM choice for this job: cublas or ptx.
	GEMM string
	// Result, when not nil, receives the job's output buffer: C, the conv output, or c = a + b.
	Result *[]float32
	// NoSplitK runs the PTX SGEMM without split-K, to measure what the split gains.
	NoSplitK bool
}

// Run runs one job on the least busy GPU.
func (r *Runner) Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
	return r.RunWith(ctx, p, report, RunOptions{})
}

// RunWith runs one job with per-run options: on the device the pool admits it to (waiting for
// memory while jobs run), after resetting that device's context if a job before it lost it,
// sampling the device with NVML while it runs.
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
	lease, err := r.pool.Acquire(ctx, p.Work().MemBytes)
	if err != nil {
		return jobs.Output{}, fmt.Errorf("%s: %w", p.Kind(), err)
	}
	d := r.devices[lease.Device()]
	out, err := r.runLeased(d, lease, func() (jobs.Output, error) {
		return d.run(ctx, impl, p, report, blas, o, lease)
	})
	if err != nil {
		return jobs.Output{}, fmt.Errorf("%s on %s: %w", p.Kind(), d.label(), err)
	}
	out.Device = &jobs.DeviceInfo{WorkerType: jobs.WorkerTypeGPU, Name: d.info.Name, Index: d.info.Index,
		ComputeCapability: d.info.ComputeCapability, Memory: d.info.Memory}
	out.Modules = d.loaded
	return out, nil
}

// runLeased runs fn under the lease: the reset the pool asked for first, NVML sampling around
// it, and the outcome reported to the pool at the end.
func (r *Runner) runLeased(d *device, lease *pool.Lease, fn func() (jobs.Output, error)) (out jobs.Output, err error) {
	defer func() { lease.Release(err) }()
	if lease.NeedsReset() {
		err = d.reset()
		lease.ResetDone(err)
		if err != nil {
			return jobs.Output{}, err
		}
	}
	var rec *nvml.Recorder
	if d.sampler != nil {
		rec = nvml.Record(d.sampler, 0)
	}
	out, err = fn()
	if rec != nil {
		if s, ok := rec.Stop(); ok && err == nil {
			out.Telemetry = &jobs.Telemetry{Samples: s.Samples, UtilizationMean: s.UtilizationMean,
				UtilizationPeak: s.UtilizationPeak, MemoryPeak: s.MemoryPeak}
		}
	}
	return out, err
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
