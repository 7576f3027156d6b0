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

	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
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

// Severity is what the error means for the device: see pool.Classify.
func (e *Error) Severity() pool.Severity { return pool.Classify(e.Code) }

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

// severity is what err means for the device it happened on: the gravest CUDA error in it (see
// pool.Classify). cuBLAS reports a kernel fault as an execution failure whose CUDA error surfaces
// only at the next synchronisation; on its own it is taken as a lost context.
func severity(err error) pool.Severity {
	return pool.Worst(err, func(e error) (pool.Severity, bool) {
		switch e := e.(type) {
		case *Error:
			return e.Severity(), true
		case *cublas.Error:
			if e.Status == 13 || e.Status == 14 { // EXECUTION_FAILED, INTERNAL_ERROR
				return pool.ContextLost, true
			}
			return pool.JobFailed, true
		}
		return 0, false
	})
}

// MemoryError says that a job does not fit a device's memory: never (Fits), or not now.
type MemoryError = pool.MemoryError
