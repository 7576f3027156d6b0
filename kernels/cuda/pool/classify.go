package pool

import "errors"

// Severity is what a failed CUDA call means for the device it ran on.
type Severity int

const (
	// JobFailed: the job fails and the device is as it was (out of memory, a bad argument).
	JobFailed Severity = iota
	// ContextLost: the device's context is unusable, and destroying it recovers: the primary
	// context is reset and retained again before the next job (CUDA_ERROR_ASSERT, or a context
	// that was destroyed under its user).
	ContextLost
	// DeviceLost: CUDA documents that the process must be terminated and relaunched to use the
	// device again (illegal address, launch failure, ...), or the hardware reported an
	// uncorrectable error. The device is dead for this process.
	DeviceLost
)

func (s Severity) String() string {
	switch s {
	case ContextLost:
		return "context lost"
	case DeviceLost:
		return "device lost"
	}
	return "job failed"
}

// Classify says what the CUresult code means for its device, from the driver API's
// documentation of each error (cuda.h).
func Classify(code int) Severity {
	switch code {
	case 201, // CUDA_ERROR_INVALID_CONTEXT: no usable context current
		709, // CUDA_ERROR_CONTEXT_IS_DESTROYED: e.g. a primary context used after a reset without a retain
		710: // CUDA_ERROR_ASSERT: "the context cannot be used anymore, and must be destroyed"
		return ContextLost
	case 700, // CUDA_ERROR_ILLEGAL_ADDRESS
		702, // CUDA_ERROR_LAUNCH_TIMEOUT
		714, // CUDA_ERROR_HARDWARE_STACK_ERROR
		715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
		716, // CUDA_ERROR_MISALIGNED_ADDRESS
		717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
		718, // CUDA_ERROR_INVALID_PC
		719, // CUDA_ERROR_LAUNCH_FAILED
		810, // CUDA_ERROR_MPS_CLIENT_TERMINATED
		911: // CUDA_ERROR_EXTERNAL_DEVICE
		// "This leaves the process in an inconsistent state and any further CUDA work will
		// return the same error. To continue using CUDA, the process must be terminated and
		// relaunched."
		return DeviceLost
	case 4, // CUDA_ERROR_DEINITIALIZED: the driver is shutting down
		214, // CUDA_ERROR_ECC_UNCORRECTABLE
		220, // CUDA_ERROR_NVLINK_UNCORRECTABLE
		999: // CUDA_ERROR_UNKNOWN: nothing says the context survived
		return DeviceLost
	}
	return JobFailed
}

// Worst is the gravest severity of any error in err's tree (errors.Join and %w wrapping
// included): a job can fail with a cuBLAS status whose cause, a sticky CUDA error, surfaces only
// at the synchronisation after it. of classifies one error and reports whether it knows it.
func Worst(err error, of func(error) (Severity, bool)) Severity {
	worst := JobFailed
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if s, ok := of(e); ok && s > worst {
			worst = s
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return worst
}

// ErrDraining is returned for jobs offered to a runner after one of its devices died: they fail
// at once, retryably, so that they run on another worker while this one drains and restarts.
var ErrDraining = errors.New("this GPU worker is restarting")
