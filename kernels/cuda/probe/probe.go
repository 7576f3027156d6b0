//go:build cgo

// Package probe finds out, before anything else touches CUDA, whether this process can use a GPU.
//
// gorgonia.org/cu calls cuInit in its init function and ends the process with a stack of text when
// that fails, and a binary linked against libcuda.so.1 does not even start where the NVIDIA driver
// is missing. The GPU binaries therefore load the driver themselves: they are linked without a
// DT_NEEDED entry for libcuda.so.1 (make build-gpu removes it), and this package's init, built with
// the cuda tag, dlopens libcuda.so.1 with RTLD_GLOBAL, so the CUDA symbols that gorgonia.org/cu calls
// resolve lazily against it, and stops the process with one line when there is no driver or no
// device. It is the one justified init() of the code base: it must run before gorgonia.org/cu's.
//
// Go initialises packages in import-path order among those whose imports are ready (the spec's
// rule since Go 1.21). This package's path sorts before gorgonia.org/cu and it imports only
// packages that gorgonia.org/cu imports too, so it always runs first. Keep it that way: no imports
// beyond errors, os, strconv and C.
//
// Probe itself has no build tag, so its behaviour on a machine without a GPU is tested everywhere.
package probe

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>

typedef int (*cu_init_fn)(unsigned int);
typedef int (*cu_count_fn)(int *);
typedef int (*cu_errname_fn)(int, const char **);

// probe returns 0 and the device count, or: -1 when libcuda.so.1 cannot be loaded (*msg: dlerror),
// -2 when it lacks the entry points, or a CUresult from cuInit/cuDeviceGetCount (*msg: its name).
static int probe(int *count, const char **msg, int *step) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) {
		*msg = dlerror();
		return -1;
	}
	cu_init_fn init = (cu_init_fn)dlsym(h, "cuInit");
	cu_count_fn cnt = (cu_count_fn)dlsym(h, "cuDeviceGetCount");
	cu_errname_fn name = (cu_errname_fn)dlsym(h, "cuGetErrorName");
	if (init == NULL || cnt == NULL) {
		*msg = "libcuda.so.1 has no cuInit/cuDeviceGetCount";
		return -2;
	}
	*step = 0;
	int r = init(0);
	if (r == 0) {
		*step = 1;
		r = cnt(count);
	}
	if (r != 0 && (name == NULL || name(r, msg) != 0)) *msg = "unknown CUDA error";
	return r;
}
*/
import "C"

import (
	"errors"
	"strconv"
)

// Probe loads libcuda.so.1 into the process (RTLD_GLOBAL), initialises the driver and returns the
// number of CUDA devices; the error says why there is none to use.
func Probe() (int, error) {
	var (
		n    C.int
		msg  *C.char
		step C.int
	)
	r := C.probe(&n, &msg, &step)
	switch {
	case r == -1:
		return 0, errors.New("cannot load libcuda.so.1, the NVIDIA driver: " + C.GoString(msg))
	case r == -2:
		return 0, errors.New(C.GoString(msg))
	case r != 0:
		call := "cuInit"
		if step == 1 {
			call = "cuDeviceGetCount"
		}
		return 0, errors.New(call + ": " + C.GoString(msg) + " (" + strconv.Itoa(int(r)) + ")")
	case n == 0:
		return 0, errors.New("the driver sees no device")
	}
	return int(n), nil
}
