//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#cgo linux CFLAGS: -I/usr/local/cuda/include
#include <cuda.h>

static const char *err_name(int code) {
	const char *s = NULL;
	if (cuGetErrorName((CUresult)code, &s) != CUDA_SUCCESS || s == NULL) return "CUDA_ERROR_UNKNOWN";
	return s;
}
static const char *err_string(int code) {
	const char *s = NULL;
	if (cuGetErrorString((CUresult)code, &s) != CUDA_SUCCESS || s == NULL) return "";
	return s;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
)

// Error is a failed CUDA driver call: what was being done, and the driver's CUresult by name
// (CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_LAUNCH_FAILED, ...), so a failed job says what happened.
type Error struct {
	Op   string // e.g. "cuMemAlloc 1.5 GiB", "launch sgemm_nn_128"
	Code int    // the CUresult
}

func (e *Error) Error() string {
	name := C.GoString(C.err_name(C.int(e.Code)))
	if desc := C.GoString(C.err_string(C.int(e.Code))); desc != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Op, name, desc)
	}
	return e.Op + ": " + name
}

// Name is the CUresult's name, e.g. CUDA_ERROR_OUT_OF_MEMORY.
func (e *Error) Name() string { return C.GoString(C.err_name(C.int(e.Code))) }

// Sticky reports whether the error leaves the context unusable: after a kernel faults, every later
// call in the context fails too, and only resetting the device's primary context recovers it.
func (e *Error) Sticky() bool {
	switch e.Code {
	case 214, // CUDA_ERROR_ECC_UNCORRECTABLE
		700, // CUDA_ERROR_ILLEGAL_ADDRESS
		702, // CUDA_ERROR_LAUNCH_TIMEOUT
		710, // CUDA_ERROR_ASSERT
		714, // CUDA_ERROR_HARDWARE_STACK_ERROR
		715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
		716, // CUDA_ERROR_MISALIGNED_ADDRESS
		717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
		718, // CUDA_ERROR_INVALID_PC
		719, // CUDA_ERROR_LAUNCH_FAILED
		999: // CUDA_ERROR_UNKNOWN
		return true
	}
	return false
}

// check turns an error from gorgonia.org/cu (a CUresult in an unexported type) into an *Error
// naming op. Other errors are wrapped as they are.
func check(op string, err error) error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if v := reflect.ValueOf(e); v.Kind() == reflect.Int {
			return &Error{Op: op, Code: int(v.Int())}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isSticky reports whether err leaves the device's context broken. cuBLAS reports a kernel fault
// as an execution failure, which is treated the same way.
func isSticky(err error) bool {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Sticky()
	}
	var be *cublas.Error
	return errors.As(err, &be) && (be.Status == 13 || be.Status == 14) // EXECUTION_FAILED, INTERNAL_ERROR
}

// MemoryError says that a job does not fit a device's memory: never (Fits), or not now (Run).
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
