//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// Faults ProvokeFault can cause, mildest first.
const (
	// FaultOutOfMemory is an allocation larger than the device: the job fails, the device is
	// as it was.
	FaultOutOfMemory = "out-of-memory"
	// FaultAssert is a device-side assert (CUDA_ERROR_ASSERT): the context is lost, and the
	// next job on the device resets it first.
	FaultAssert = "assert"
	// FaultIllegalAddress is a kernel storing through an invalid pointer
	// (CUDA_ERROR_ILLEGAL_ADDRESS): CUDA documents that the process must be restarted, so the
	// device is dead and Dead closes. Provoke it in a process of its own.
	FaultIllegalAddress = "illegal-address"
)

// Faults lists the faults, mildest first.
var Faults = []string{FaultOutOfMemory, FaultAssert, FaultIllegalAddress}

// FaultError names the CUDA error each fault must fail with.
var FaultError = map[string]string{
	FaultOutOfMemory:    "CUDA_ERROR_OUT_OF_MEMORY",
	FaultAssert:         "CUDA_ERROR_ASSERT",
	FaultIllegalAddress: "CUDA_ERROR_ILLEGAL_ADDRESS",
}

// ProvokeFault runs a job that fails the way a bad one would, and returns its error. It goes
// through the pool like any job, so the device is left as a real fault would leave it: gpucheck
// and the tests use it to show what the runner does next.
func (r *Runner) ProvokeFault(ctx context.Context, fault string) error {
	if !slices.Contains(Faults, fault) {
		return fmt.Errorf("unknown fault %q: use %s", fault, strings.Join(Faults, ", "))
	}
	lease, err := r.pool.Acquire(ctx, 0)
	if err != nil {
		return err
	}
	d := r.devices[lease.Device()]
	_, err = r.runLeased(d, lease, func() (jobs.Output, error) { return jobs.Output{}, d.provoke(fault) })
	return err
}

func (d *device) provoke(fault string) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	s, err := d.takeSlot(nil)
	if err != nil {
		return err
	}
	j := &Job{d: d, s: s}
	switch fault {
	case FaultOutOfMemory:
		_, err = j.alloc(2 * d.info.Memory)
	case FaultAssert:
		err = j.launch(ptx.FaultAssert, dim3{x: 1}, dim3{x: 32}, intArg(1))
	case FaultIllegalAddress:
		const bad = 16 // below any device allocation
		err = j.launch(ptx.VectorAdd, dim3{x: 1}, dim3{x: 256}, bad, bad, bad, i64Arg(1024))
	}
	err = errors.Join(err, j.free()) // a kernel fault surfaces at the synchronisation in free
	if severity(err) == pool.JobFailed {
		d.putSlot(s)
	}
	if err == nil {
		return fmt.Errorf("fault %s did not fail", fault)
	}
	return err
}
