// Package pool is the GPU runner's bookkeeping, kept in plain Go so that it is tested without a
// GPU: which device a job starts on and when (memory admission, so that small jobs share a GPU up
// to a per-GPU job limit), what a CUDA error means for its device (Classify), each device's health
// (healthy; broken until its context is reset; dead), and when the worker must stop so that its
// supervisor restarts it (Dead).
//
// It must not import cgo, CUDA or Temporal: package kernels/cuda drives it, doing the CUDA calls
// that the pool asks for (a context reset) and reporting how each job ended.
package pool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gpujobs/gpujobs/jobs"
)

// Defaults of Options, and what a device keeps for itself: the rule the scheduler estimates
// with too (jobs.GPUShare).
const (
	ContextReserve       = jobs.GPUContextReserve
	DefaultJobsPerDevice = jobs.DefaultJobsPerGPU
	DefaultHeadroom      = jobs.GPUJobHeadroom
	// DefaultMaxResets is how many context resets in a row, with no job completing between them,
	// a device gets before the pool gives up on it.
	DefaultMaxResets = 2
)

// Options configure a Pool; zero values mean the defaults above.
type Options struct {
	// JobsPerDevice is the most jobs that run on one device at once (1: no sharing).
	JobsPerDevice int
	// Headroom is kept free beyond each job's memory estimate: cuBLAS workspaces, the
	// allocator's rounding, estimates that are a little short.
	Headroom int64
	// MaxResets: see DefaultMaxResets.
	MaxResets int
}

func (o Options) withDefaults() Options {
	if o.JobsPerDevice <= 0 {
		o.JobsPerDevice = DefaultJobsPerDevice
	}
	if o.Headroom <= 0 {
		o.Headroom = DefaultHeadroom
	}
	if o.MaxResets <= 0 {
		o.MaxResets = DefaultMaxResets
	}
	return o
}

// Device is what the pool knows of a GPU beforehand.
type Device struct {
	// Name is how errors call it, e.g. "GPU 0 (NVIDIA H200)".
	Name string
	// Capacity is the memory jobs may use: the total less what the context itself needs.
	Capacity int64
}

// Hooks connect the pool to the devices. Both may be nil (tests of the pure bookkeeping).
type Hooks struct {
	// Free is the device's free memory as the driver reports it now (cuMemGetInfo). It
	// catches memory held by other processes, or by a job beyond its estimate.
	Free func(dev int) (int64, error)
	// Classify says what an error of a job or of Free means for the device; nil: JobFailed.
	Classify func(error) Severity
}

// State is a device's health.
type State int

const (
	Healthy   State = iota
	Broken          // a job lost the context: reset it before the next job, once the running ones end
	Resetting       // the holder of a lease is resetting it
	Dead            // unusable until the process restarts
)

func (s State) String() string {
	return [...]string{"healthy", "broken", "resetting", "dead"}[s]
}

// Pool admits jobs onto devices.
type Pool struct {
	o     Options
	hooks Hooks

	mu      sync.Mutex
	devs    []*dev
	queue   []*waiter     // jobs waiting for room, first come first served
	changed chan struct{} // closed (and replaced) whenever room may have appeared
	dead    chan struct{} // closed when the first device dies
	deadErr error
}

type dev struct {
	Device
	state   State
	cause   error // why it is broken or dead
	resets  int   // resets since a job last completed on it
	running map[*Lease]struct{}
}

type waiter struct{ need int64 } // not zero-sized: each waiter needs its own address

// New makes a pool over devs, in the runner's device order.
func New(devs []Device, o Options, h Hooks) *Pool {
	p := &Pool{o: o.withDefaults(), hooks: h, changed: make(chan struct{}), dead: make(chan struct{})}
	for _, d := range devs {
		p.devs = append(p.devs, &dev{Device: d, running: map[*Lease]struct{}{}})
	}
	return p
}

// Slots is the most jobs the pool runs at once: the worker's concurrency.
func (p *Pool) Slots() int { return len(p.devs) * p.o.JobsPerDevice }

// JobsPerDevice is the per-device job limit in force.
func (p *Pool) JobsPerDevice() int { return p.o.JobsPerDevice }

// Headroom is the memory kept free beyond each job's estimate.
func (p *Pool) Headroom() int64 { return p.o.Headroom }

// Fits returns a *MemoryError when a job that needs mem bytes by its estimate can never run on
// any of the devices, whatever their state: a job that fails Fits must not be retried.
func (p *Pool) Fits(mem int64) error {
	var biggest *dev
	for _, d := range p.devs {
		if biggest == nil || d.Capacity > biggest.Capacity {
			biggest = d
		}
	}
	if biggest == nil {
		return fmt.Errorf("no GPU")
	}
	if mem+p.o.Headroom > biggest.Capacity {
		return &MemoryError{Need: mem, Have: biggest.Capacity - p.o.Headroom, Device: biggest.Name}
	}
	return nil
}

// Waiting is the number of jobs waiting in Acquire.
func (p *Pool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// Dead is closed when a device has died: the worker should stop taking jobs, let the running
// ones end and exit non-zero, so that its supervisor starts a fresh process.
func (p *Pool) Dead() <-chan struct{} { return p.dead }

// Err says which device died and why, once Dead is closed.
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadErr
}

// A Lease is one job's place on a device, from Acquire to Release.
type Lease struct {
	p         *Pool
	dev       int
	need      int64 // the estimate plus headroom
	allocated atomic.Int64
	reset     bool
	released  bool
}

// Device is the index of the device the job runs on.
func (l *Lease) Device() int { return l.dev }

// NeedsReset says that the device's context was lost: the holder must reset it (and then call
// ResetDone) before running the job.
func (l *Lease) NeedsReset() bool { return l.reset }

// Allocated tells the pool that the job allocated n more bytes of its estimate, so that the
// driver's free figure, which already counts them, is not charged twice.
func (l *Lease) Allocated(n int64) { l.allocated.Add(n) }

// outstanding is the part of the job's reservation the driver does not yet see as used.
func (l *Lease) outstanding() int64 { return max(0, l.need-l.allocated.Load()) }

// Status is one device's state, for logs and gpucheck.
type Status struct {
	Name     string
	State    State
	Running  int
	Reserved int64 // the running jobs' estimates plus headroom
	Cause    error
}

// Status describes every device.
func (p *Pool) Status() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := make([]Status, len(p.devs))
	for i, d := range p.devs {
		s[i] = Status{Name: d.Name, State: d.state, Running: len(d.running), Reserved: d.reserved(), Cause: d.cause}
	}
	return s
}

func (d *dev) reserved() int64 {
	var n int64
	for l := range d.running {
		n += l.need
	}
	return n
}

func (d *dev) outstanding() int64 {
	var n int64
	for l := range d.running {
		n += l.outstanding()
	}
	return n
}

// Acquire waits until the job, which needs mem bytes of device memory by its estimate, may start
// on a device, and returns its lease. A job starts on the usable device running the fewest jobs
// (then the one with the most room) where fewer than JobsPerDevice jobs run and its estimate
// plus headroom fits both the capacity less the running jobs' reservations and the free memory
// the driver reports less what those jobs have not allocated yet. Jobs are admitted in arrival
// order: one that must wait holds back those behind it, so a large job is not starved by small
// ones. It waits while room can still appear (a job is running or a context is being reset), and
// returns a *MemoryError with Free set when none can (another process holds the memory); after a
// device died it returns ErrDraining at once.
func (p *Pool) Acquire(ctx context.Context, mem int64) (*Lease, error) {
	need := mem + p.o.Headroom
	w := &waiter{need: need}
	p.mu.Lock()
	p.queue = append(p.queue, w)
	for {
		if p.deadErr != nil {
			p.leave(w)
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %v", ErrDraining, p.deadErr)
		}
		if p.queue[0] == w {
			l, err := p.admit(need)
			if l != nil || err != nil {
				p.leave(w)
				p.mu.Unlock()
				return l, err
			}
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.leave(w)
			p.mu.Unlock()
			return nil, fmt.Errorf("waiting for GPU memory: %w", ctx.Err())
		case <-ch:
		}
		p.mu.Lock()
	}
}

// leave takes w out of the queue and wakes the others: the next one may be at the head now.
func (p *Pool) leave(w *waiter) {
	for i, q := range p.queue {
		if q == w {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			break
		}
	}
	p.notify()
}

func (p *Pool) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// admit returns a lease, an error, or neither (wait). p.mu is held.
func (p *Pool) admit(need int64) (*Lease, error) {
	best, bestRoom := -1, int64(0)
	canWait := false
	var short *MemoryError // the closest miss, for the error when nothing can free up
	biggest := -1
	for i, d := range p.devs {
		if d.state == Dead {
			continue
		}
		if biggest < 0 || d.Capacity > p.devs[biggest].Capacity {
			biggest = i
		}
		if need > d.Capacity {
			continue // never fits here
		}
		switch d.state {
		case Broken:
			if len(d.running) == 0 {
				d.state = Resetting
				return p.lease(i, need, true), nil
			}
			canWait = true
			continue
		case Resetting:
			canWait = true
			continue
		}
		if len(d.running) > 0 {
			canWait = true
		}
		if len(d.running) >= p.o.JobsPerDevice {
			continue
		}
		room := d.Capacity - d.reserved()
		if p.hooks.Free != nil {
			free, err := p.hooks.Free(i)
			if err != nil {
				p.failLocked(i, err, p.classify(err))
				if p.deadErr != nil {
					return nil, fmt.Errorf("%w: %v", ErrDraining, p.deadErr)
				}
				continue
			}
			room = min(room, free-d.outstanding())
		}
		if need > room {
			if short == nil || room > short.Have {
				short = &MemoryError{Need: need - p.o.Headroom, Have: max(room-p.o.Headroom, 0), Device: d.Name, Free: true}
			}
			continue
		}
		if best < 0 || len(d.running) < len(p.devs[best].running) || (len(d.running) == len(p.devs[best].running) && room > bestRoom) {
			best, bestRoom = i, room
		}
	}
	switch {
	case best >= 0:
		return p.lease(best, need, false), nil
	case canWait:
		return nil, nil
	case biggest < 0:
		return nil, fmt.Errorf("%w: no usable GPU left", ErrDraining)
	case short != nil:
		return nil, short
	}
	d := p.devs[biggest]
	return nil, &MemoryError{Need: need - p.o.Headroom, Have: d.Capacity - p.o.Headroom, Device: d.Name}
}

func (p *Pool) lease(i int, need int64, reset bool) *Lease {
	l := &Lease{p: p, dev: i, need: need, reset: reset}
	p.devs[i].running[l] = struct{}{}
	return l
}

func (p *Pool) classify(err error) Severity {
	if p.hooks.Classify == nil {
		return JobFailed
	}
	return p.hooks.Classify(err)
}

// ResetDone reports the reset that NeedsReset asked for: nil, and the device is healthy again
// and the job runs; an error, and the device is dead.
func (l *Lease) ResetDone(err error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devs[l.dev]
	l.reset = false
	if err != nil {
		p.failLocked(l.dev, fmt.Errorf("context reset failed: %w", err), DeviceLost)
		return
	}
	d.state, d.resets = Healthy, d.resets+1
	d.cause = nil
	p.notify()
}

// Release ends the job: err is how it ended (nil: it completed). A CUDA error that lost the
// context marks the device broken (reset before its next job), or dead after MaxResets resets
// in a row that did not help; one that CUDA says needs a new process marks it dead.
func (l *Lease) Release(err error) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	d := p.devs[l.dev]
	delete(d.running, l)
	if l.reset && d.state == Resetting { // released without resetting: someone else must
		d.state = Broken
	}
	if err == nil {
		if d.state == Healthy {
			d.resets = 0
		}
	} else {
		p.failLocked(l.dev, err, p.classify(err))
	}
	p.notify()
}

// failLocked applies an error of severity s to device i. p.mu is held.
func (p *Pool) failLocked(i int, err error, s Severity) {
	d := p.devs[i]
	if d.state == Dead {
		return
	}
	switch s {
	case JobFailed:
		return
	case ContextLost:
		if d.resets < p.o.MaxResets {
			if d.state == Healthy {
				d.state, d.cause = Broken, err
			}
			return
		}
		err = fmt.Errorf("%w (after %d context resets in a row)", err, d.resets)
	}
	d.state, d.cause = Dead, err
	if p.deadErr == nil {
		p.deadErr = fmt.Errorf("%s is unusable until the worker restarts: %w", d.Name, err)
		close(p.dead)
	}
	p.notify()
}

// MemoryError says that a job does not fit a device's memory: never (Fits, or Acquire when no
// device could ever hold it), or not now (Free: memory that others hold).
type MemoryError struct {
	Need, Have int64
	Device     string
	Free       bool // Have is free memory now rather than the device's usable total
}

func (e *MemoryError) Error() string {
	if e.Free {
		return fmt.Sprintf("job needs %s of GPU memory, %s has %s free now", jobs.FormatBytes(e.Need), e.Device, jobs.FormatBytes(e.Have))
	}
	return fmt.Sprintf("job needs %s of GPU memory, more than the %s that %s can hold", jobs.FormatBytes(e.Need), jobs.FormatBytes(e.Have), e.Device)
}

// Unwrap classifies the error for the worker: not now (jobs.ErrBusy: the job waits and is
// offered again, possibly to another worker) or never (jobs.ErrTooBig: it fails as
// ResourceExhausted).
func (e *MemoryError) Unwrap() error {
	if e.Free {
		return jobs.ErrBusy
	}
	return jobs.ErrTooBig
}
