//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	"github.com/gpujobs/gpujobs/kernels/cuda/nvml"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// device is one GPU: its primary context (shared with cuBLAS, which uses the runtime API), the
// kernel modules loaded into it, and a free list of slots, one per job running on it. Which job
// runs on it when, and what an error means for it, is the pool's business (package pool); the
// device does the CUDA calls.
type device struct {
	info DeviceInfo
	dev  cu.Device
	ctx  cu.CUContext
	// retains counts cuDevicePrimaryCtxRetain calls, released as many times in close: a reset
	// does not release the context, and the retain after it is one more.
	retains int

	fns       map[string]cu.Function
	mods      []cu.Module
	loaded    string // how the modules were loaded: fatbin, ptx, or from GPUJOBS_KERNEL_DIR
	kernelDir string

	sampler nvml.Source // NVML for this device; nil without NVML

	slotMu sync.Mutex
	free   []*slot
}

// slot is what one running job needs besides memory: a stream, events and a cuBLAS handle.
type slot struct {
	stream      cu.Stream
	start, stop cu.Event
	ring        []cu.Event // iterate keeps at most len(ring) steps queued
	blas        *cublas.Handle
	blasLib     *cublas.Library
}

// pipelineDepth is how many benchmark steps iterate lets the host queue ahead of the GPU: enough
// that the GPU never waits for the host, few enough that a cancellation stops it soon.
const pipelineDepth = 4

func openDevice(i int, kernelDir string) (*device, error) {
	dev, err := cu.GetDevice(i)
	if err != nil {
		return nil, check(fmt.Sprintf("cuDeviceGet %d", i), err)
	}
	d := &device{dev: dev, info: DeviceInfo{Index: i}, kernelDir: kernelDir}
	if d.info.Name, err = dev.Name(); err != nil {
		return nil, check("cuDeviceGetName", err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return nil, check("cuDeviceGetAttribute", err)
	}
	d.info.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	if major < 8 {
		return nil, fmt.Errorf("GPU %d (%s) has compute capability %s: the kernels need 8.0 or newer (Ampere, Hopper)", i, d.info.Name, d.info.ComputeCapability)
	}
	if d.info.Memory, err = dev.TotalMem(); err != nil {
		return nil, check("cuDeviceTotalMem", err)
	}
	if d.info.SMs, err = dev.Attribute(cu.MultiprocessorCount); err != nil {
		return nil, check("cuDeviceGetAttribute", err)
	}
	if d.info.PCIBusID, err = pciBusID(dev); err != nil {
		return nil, err
	}
	if d.ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return nil, check("cuDevicePrimaryCtxRetain", err)
	}
	d.retains++
	leave, err := d.enter()
	if err == nil {
		err = d.load()
		leave()
	}
	if err != nil {
		_ = dev.ReleasePrimaryCtx() // the runner never saw this device: nothing else releases it
		return nil, err
	}
	return d, nil
}

// enter pins the goroutine to its thread and makes the device's context current there. Every
// CUDA call on this device happens between enter and the returned leave.
func (d *device) enter() (leave func(), err error) {
	unlock := lockThread()
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		unlock()
		return nil, check("cuCtxSetCurrent", err)
	}
	return unlock, nil
}

// load loads every kernel module: from GPUJOBS_KERNEL_DIR when set, else the embedded fatbin
// (sm_90 SASS, or its compute_80 PTX JIT-compiled for other GPUs), falling back to the plain PTX
// if the driver refuses the fatbin.
func (d *device) load() error {
	d.fns = map[string]cu.Function{}
	d.mods = nil
	kinds := map[string]bool{}
	for _, m := range ptx.Modules {
		mod, kind, err := loadModule(m.Name, d.kernelDir)
		if err != nil {
			return err
		}
		kinds[kind] = true
		d.mods = append(d.mods, mod)
		for _, k := range m.Kernels {
			fn, err := mod.Function(k)
			if err != nil {
				return check(fmt.Sprintf("cuModuleGetFunction %s.%s", m.Name, k), err)
			}
			d.fns[k] = fn
		}
	}
	d.loaded = "fatbin"
	if kinds["ptx"] {
		d.loaded = "ptx"
	}
	if d.kernelDir != "" {
		d.loaded = d.kernelDir + " (" + strings.Join(slices.Sorted(maps.Keys(kinds)), "+") + ")"
	}
	return nil
}

// loadModule loads one module and says from what: fatbin or ptx.
func loadModule(name, dir string) (cu.Module, string, error) {
	var files []ptx.File
	var err error
	if dir != "" {
		files, err = ptx.FromDir(dir, name)
	} else {
		files, err = ptx.Embedded(name)
	}
	if err != nil {
		return cu.Module{}, "", err
	}
	var errs []string
	for _, f := range files {
		mod, err := cu.LoadData(string(f.Data))
		if err == nil {
			return mod, f.Kind, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", f.Path, check("cuModuleLoadData", err)))
	}
	return cu.Module{}, "", fmt.Errorf("load kernels %s: %s", name, strings.Join(errs, "; "))
}

// usable is the memory a job may count on: the total less the reserve.
func (d *device) usable() int64 { return d.info.Memory - reserveBytes }

func (d *device) label() string { return fmt.Sprintf("GPU %d (%s)", d.info.Index, d.info.Name) }

// run runs one job on this device, on the calling goroutine's thread. The pool has admitted it
// (and reset the context first when a job before it lost it).
func (d *device) run(ctx context.Context, impl Impl, p jobs.Params, report jobs.Reporter, blas *cublas.Library, o RunOptions, lease *pool.Lease) (jobs.Output, error) {
	leave, err := d.enter()
	if err != nil {
		return jobs.Output{}, err
	}
	defer leave()
	s, err := d.takeSlot(blas)
	if err != nil {
		return jobs.Output{}, err
	}
	j := &Job{d: d, s: s, result: o.Result, lease: lease, noSplitK: o.NoSplitK}
	if blas != nil {
		j.blas = s.blas
	}
	out, err := impl(ctx, j, p, report)
	if ferr := j.free(); err == nil {
		err = ferr
	} else if ferr != nil {
		err = errors.Join(err, ferr) // a sticky error behind a cuBLAS status surfaces at the sync
	}
	if err != nil && severity(err) != pool.JobFailed {
		return jobs.Output{}, err // the slot's stream and handle died with the context
	}
	d.putSlot(s)
	return out, err
}

// memFree is the device's free memory as the driver reports it, for the pool.
func (d *device) memFree() (int64, error) {
	leave, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	free, _, err := cu.MemInfo()
	return free, check("cuMemGetInfo", err)
}

// reset destroys the primary context after a job lost it, and makes a working one: every
// allocation, module, stream and cuBLAS handle of the old context is gone, so the context is
// retained again (a reset leaves it inactive, and the old handle would fail with
// CUDA_ERROR_CONTEXT_IS_DESTROYED), the modules are loaded again and slots are made afresh. The
// pool calls it only while no job runs on the device.
func (d *device) reset() error {
	unlock := lockThread()
	defer unlock()
	d.slotMu.Lock()
	d.free = nil // their streams and handles belonged to the old context; nothing to release
	d.slotMu.Unlock()
	d.mods = nil
	if err := d.dev.ResetPrimaryCtx(); err != nil {
		return fmt.Errorf("reset %s: %w", d.label(), check("cuDevicePrimaryCtxReset", err))
	}
	ctx, err := d.dev.RetainPrimaryCtx()
	if err != nil {
		return fmt.Errorf("retain %s after a reset: %w", d.label(), check("cuDevicePrimaryCtxRetain", err))
	}
	d.ctx = ctx
	d.retains++
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		return check("cuCtxSetCurrent", err)
	}
	if err := d.load(); err != nil {
		return fmt.Errorf("reload kernels on %s after a reset: %w", d.label(), err)
	}
	return nil
}

// takeSlot returns a free slot or makes one; the context must be current.
func (d *device) takeSlot(blas *cublas.Library) (*slot, error) {
	d.slotMu.Lock()
	var s *slot
	if n := len(d.free); n > 0 {
		s, d.free = d.free[n-1], d.free[:n-1]
	}
	d.slotMu.Unlock()
	if s == nil {
		var err error
		if s, err = newSlot(); err != nil {
			return nil, err
		}
	}
	if blas != nil && s.blasLib != blas {
		h, err := blas.NewHandle()
		if err != nil {
			s.destroy()
			return nil, err
		}
		if err := h.SetStream(streamHandle(&s.stream)); err != nil {
			_ = h.Destroy()
			s.destroy()
			return nil, err
		}
		if s.blas != nil {
			_ = s.blas.Destroy()
		}
		s.blas, s.blasLib = h, blas
	}
	return s, nil
}

func (d *device) putSlot(s *slot) {
	d.slotMu.Lock()
	d.free = append(d.free, s)
	d.slotMu.Unlock()
}

func newSlot() (*slot, error) {
	s := &slot{}
	var err error
	if s.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return nil, check("cuStreamCreate", err)
	}
	if s.start, err = cu.MakeEvent(cu.DefaultEvent); err == nil {
		s.stop, err = cu.MakeEvent(cu.DefaultEvent)
	}
	for i := 0; err == nil && i < pipelineDepth; i++ {
		var e cu.Event
		if e, err = cu.MakeEvent(cu.DisableTiming); err == nil {
			s.ring = append(s.ring, e)
		}
	}
	if err != nil {
		s.destroy()
		return nil, check("cuEventCreate", err)
	}
	return s, nil
}

func (s *slot) destroy() {
	if s.blas != nil {
		_ = s.blas.Destroy()
	}
	for _, e := range append([]cu.Event{s.start, s.stop}, s.ring...) {
		if e != (cu.Event{}) {
			_ = cu.DestroyEvent(&e)
		}
	}
	if s.stream != (cu.Stream{}) {
		_ = s.stream.Destroy()
	}
}

func (d *device) close() error {
	leave, err := d.enter()
	if err == nil {
		d.slotMu.Lock()
		for _, s := range d.free {
			s.destroy()
		}
		d.free = nil
		d.slotMu.Unlock()
		for _, m := range d.mods {
			_ = m.Unload()
		}
		d.mods = nil
		leave()
	}
	var errs []error
	for ; d.retains > 0; d.retains-- {
		errs = append(errs, check("cuDevicePrimaryCtxRelease", d.dev.ReleasePrimaryCtx()))
	}
	return errors.Join(errs...)
}

// pciBusID is the device's PCI address as NVML takes it, e.g. "0000:3b:00.0".
func pciBusID(dev cu.Device) (string, error) {
	var v [3]int
	for i, a := range []cu.DeviceAttribute{cu.PciDomainID, cu.PciBusID, cu.PciDeviceID} {
		var err error
		if v[i], err = dev.Attribute(a); err != nil {
			return "", check("cuDeviceGetAttribute", err)
		}
	}
	return fmt.Sprintf("%04x:%02x:%02x.0", v[0], v[1], v[2]), nil
}

// streamHandle is the CUstream inside a cu.Stream, for cuBLAS: gorgonia.org/cu keeps it in an
// unexported field of a one-pointer struct, and its C type is private to that package.
func streamHandle(s *cu.Stream) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(s)) }

// A cu.Stream must stay exactly one pointer for streamHandle to be right.
var _ = [1]struct{}{}[unsafe.Sizeof(cu.Stream{})-unsafe.Sizeof(unsafe.Pointer(nil))]
