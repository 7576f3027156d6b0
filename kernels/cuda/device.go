//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// device is one GPU: its primary context (shared with cuBLAS, which uses the runtime API), the
// kernel modules loaded into it, and a free list of slots, one per job running on it.
type device struct {
	info DeviceInfo
	dev  cu.Device
	ctx  cu.CUContext

	// mu is held shared by running jobs and exclusively to reset the context after a fault.
	mu       sync.RWMutex
	brokenMu sync.Mutex
	broken   error // a sticky error left the context unusable: reset before the next job
	fns      map[string]cu.Function
	mods     []cu.Module
	loaded   string // fatbin or ptx: how the modules were loaded

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

// headroomBytes is left free beyond a job's estimate when checking free memory at its start.
const headroomBytes = 64 << 20

// pipelineDepth is how many benchmark steps iterate lets the host queue ahead of the GPU: enough
// that the GPU never waits for the host, few enough that a cancellation stops it soon.
const pipelineDepth = 4

func openDevice(i int) (*device, error) {
	dev, err := cu.GetDevice(i)
	if err != nil {
		return nil, check(fmt.Sprintf("cuDeviceGet %d", i), err)
	}
	d := &device{dev: dev, info: DeviceInfo{Index: i}}
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
	if d.ctx, err = dev.RetainPrimaryCtx(); err != nil {
		return nil, check("cuDevicePrimaryCtxRetain", err)
	}
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	if err := d.load(); err != nil {
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

// load loads every kernel module: the fatbin (sm_90 SASS, or its compute_80 PTX JIT-compiled for
// other GPUs), falling back to the plain PTX if the driver refuses the fatbin.
func (d *device) load() error {
	d.fns = map[string]cu.Function{}
	d.mods = nil
	d.loaded = "fatbin"
	for _, m := range ptx.Modules {
		mod, err := loadModule(m.Name, &d.loaded)
		if err != nil {
			return err
		}
		d.mods = append(d.mods, mod)
		for _, k := range m.Kernels {
			fn, err := mod.Function(k)
			if err != nil {
				return check(fmt.Sprintf("cuModuleGetFunction %s.%s", m.Name, k), err)
			}
			d.fns[k] = fn
		}
	}
	return nil
}

func loadModule(name string, loaded *string) (cu.Module, error) {
	fatbin, err := ptx.Fatbin(name)
	if err != nil {
		return cu.Module{}, err
	}
	mod, ferr := cu.LoadData(string(fatbin))
	if ferr == nil {
		return mod, nil
	}
	text, err := ptx.PTX(name)
	if err != nil {
		return cu.Module{}, err
	}
	mod, err = cu.LoadData(text)
	if err != nil {
		return cu.Module{}, fmt.Errorf("load kernels %s: fatbin: %v; PTX: %w", name, check("cuModuleLoadData", ferr), check("cuModuleLoadData", err))
	}
	*loaded = "ptx"
	return mod, nil
}

// usable is the memory a job may count on: the total less the reserve.
func (d *device) usable() int64 { return d.info.Memory - reserveBytes }

func (d *device) label() string { return fmt.Sprintf("GPU %d (%s)", d.info.Index, d.info.Name) }

// run runs one job on this device, on the calling goroutine's thread.
func (d *device) run(ctx context.Context, impl Impl, p jobs.Params, report jobs.Reporter, blas *cublas.Library, result *[]float32) (jobs.Output, error) {
	if err := d.recover(); err != nil {
		return jobs.Output{}, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	leave, err := d.enter()
	if err != nil {
		return jobs.Output{}, err
	}
	defer leave()

	// Compare the estimate with what is free now, before allocating anything: a job that does not
	// fit now is retried later (Fits has already rejected those that never fit).
	free, _, err := cu.MemInfo()
	if err != nil {
		return jobs.Output{}, d.fail(check("cuMemGetInfo", err))
	}
	if need := p.Work().MemBytes; need+headroomBytes > free {
		return jobs.Output{}, &MemoryError{Need: need, Have: free, Device: d.label(), Free: true}
	}

	s, err := d.takeSlot(blas)
	if err != nil {
		return jobs.Output{}, d.fail(err)
	}
	j := &Job{d: d, s: s, result: result}
	if blas != nil {
		j.blas = s.blas
	}
	out, err := impl(ctx, j, p, report)
	if ferr := j.free(); err == nil {
		err = ferr
	}
	if err != nil {
		if isSticky(err) {
			return jobs.Output{}, d.fail(err) // the slot's stream and handle died with the context
		}
		d.putSlot(s)
		return jobs.Output{}, err
	}
	d.putSlot(s)
	return out, nil
}

// fail records a sticky error so the next job resets the context first, and returns err.
func (d *device) fail(err error) error {
	if isSticky(err) {
		d.brokenMu.Lock()
		if d.broken == nil {
			d.broken = err
		}
		d.brokenMu.Unlock()
	}
	return err
}

func (d *device) brokenBy() error {
	d.brokenMu.Lock()
	defer d.brokenMu.Unlock()
	return d.broken
}

// recover resets the device's primary context after a sticky error: every allocation, module,
// stream and cuBLAS handle of the old context is gone, so the modules are loaded again and slots
// are made afresh. Jobs still running on the device finish (and fail) first.
func (d *device) recover() error {
	if d.brokenBy() == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cause := d.brokenBy()
	if cause == nil {
		return nil // another job reset it while this one waited
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	d.slotMu.Lock()
	d.free = nil // their streams and handles belonged to the old context; nothing to release
	d.slotMu.Unlock()
	if err := d.dev.ResetPrimaryCtx(); err != nil {
		return fmt.Errorf("reset %s after %v: %w", d.label(), cause, check("cuDevicePrimaryCtxReset", err))
	}
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		return check("cuCtxSetCurrent", err)
	}
	if err := d.load(); err != nil {
		return fmt.Errorf("reload kernels on %s after a reset: %w", d.label(), err)
	}
	d.brokenMu.Lock()
	d.broken = nil
	d.brokenMu.Unlock()
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
	if err != nil {
		return err
	}
	defer leave()
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
	return errors.Join(check("cuDevicePrimaryCtxRelease", d.dev.ReleasePrimaryCtx()))
}

// streamHandle is the CUstream inside a cu.Stream, for cuBLAS: gorgonia.org/cu keeps it in an
// unexported field of a one-pointer struct, and its C type is private to that package.
func streamHandle(s *cu.Stream) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(s)) }

// A cu.Stream must stay exactly one pointer for streamHandle to be right.
var _ = [1]struct{}{}[unsafe.Sizeof(cu.Stream{})-unsafe.Sizeof(unsafe.Pointer(nil))]
