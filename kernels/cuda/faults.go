//go:build cuda

package cuda

import (
	"errors"
	"fmt"

	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// Faults ProvokeFault can cause.
const (
	FaultOutOfMemory    = "out-of-memory"   // an allocation larger than the device
	FaultIllegalAddress = "illegal-address" // a kernel writing through an invalid pointer (sticky)
)

// ProvokeFault makes device i fail the way a bad job would, and returns the error that job
// would have failed with. gpucheck and the tests use it to show that the runner keeps serving:
// an out-of-memory error leaves the context as it was, and an illegal address (which breaks the
// context for good) makes the next job on that device reset it first.
func (r *Runner) ProvokeFault(i int, fault string) error {
	if i < 0 || i >= len(r.devices) {
		return fmt.Errorf("no device %d", i)
	}
	d := r.devices[i]
	if err := d.recover(); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	s, err := d.takeSlot(nil)
	if err != nil {
		return d.fail(err)
	}
	j := &Job{d: d, s: s}
	switch fault {
	case FaultOutOfMemory:
		_, err = j.alloc(2 * d.info.Memory)
	case FaultIllegalAddress:
		const bad = 16 // below any device allocation
		err = j.launch(ptx.VectorAdd, dim3{x: 1}, dim3{x: 256}, bad, bad, bad, i64Arg(1024))
	default:
		err = fmt.Errorf("unknown fault %q: use %s or %s", fault, FaultOutOfMemory, FaultIllegalAddress)
	}
	err = errors.Join(err, j.free()) // a kernel fault surfaces at the synchronisation in free
	if isSticky(err) {
		return d.fail(err)
	}
	d.putSlot(s)
	if err == nil {
		return fmt.Errorf("fault %s did not fail", fault)
	}
	return err
}
