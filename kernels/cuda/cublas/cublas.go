//go:build cgo

// Package cublas loads NVIDIA's cuBLAS at run time with dlopen and calls its SGEMM.
//
// Linking cuBLAS at build time cannot work across CUDA versions: its soname changes with every
// major release (libcublas.so.11 from Debian's CUDA 11.8 here, .12 or .13 on a GPU node), and
// copying it along is hundreds of MB. So the GPU worker looks for whichever one the node has
// and falls back to its own PTX SGEMM when there is none. The package has no build tag and needs
// only libdl: its loading logic is tested on any machine. It must not import gorgonia.org/cu;
// handles, streams and device pointers cross its API as plain addresses.
package cublas

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

typedef struct {
	void *create, *destroy, *set_stream, *set_math, *sgemm, *version;
} cublas_fns;

// open_lib dlopens path (after its libcublasLt sibling lt, when given, so that a copy outside
// the loader's search path finds it) and resolves the entry points; it returns NULL or dlerror().
static const char *open_lib(const char *path, const char *lt, cublas_fns *f) {
	if (lt != NULL) dlopen(lt, RTLD_NOW | RTLD_GLOBAL); // best effort: libcublas reports what is missing
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return dlerror();
	f->create = dlsym(h, "cublasCreate_v2");
	f->destroy = dlsym(h, "cublasDestroy_v2");
	f->set_stream = dlsym(h, "cublasSetStream_v2");
	f->set_math = dlsym(h, "cublasSetMathMode");
	f->sgemm = dlsym(h, "cublasSgemm_v2");
	f->version = dlsym(h, "cublasGetVersion_v2");
	if (!f->create || !f->destroy || !f->set_stream || !f->set_math || !f->sgemm || !f->version) {
		dlclose(h);
		return "missing cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, cublasSetMathMode, cublasSgemm_v2 or cublasGetVersion_v2";
	}
	return NULL;
}

static int call_create(void *fn, void **handle) { return ((int (*)(void **))fn)(handle); }
static int call_destroy(void *fn, void *handle) { return ((int (*)(void *))fn)(handle); }
static int call_set_stream(void *fn, void *handle, void *stream) { return ((int (*)(void *, void *))fn)(handle, stream); }
static int call_set_math(void *fn, void *handle, int mode) { return ((int (*)(void *, int))fn)(handle, mode); }
static int call_version(void *fn, void *handle, int *v) { return ((int (*)(void *, int *))fn)(handle, v); }

typedef int (*sgemm_fn)(void *, int, int, int, int, int, const float *, const float *, int, const float *, int,
                        const float *, float *, int);
static int call_sgemm(void *fn, void *handle, int ta, int tb, int m, int n, int k, float alpha, size_t a, int lda,
                      size_t b, int ldb, float beta, size_t c, int ldc) {
	return ((sgemm_fn)fn)(handle, ta, tb, m, n, k, &alpha, (const float *)a, lda, (const float *)b, ldb, &beta,
	                      (float *)c, ldc);
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"
)

// Sonames tried, newest first: the library must match the driver's CUDA major version or older.
var Sonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// Dirs are searched after the dynamic loader's own path: where CUDA toolkits install themselves.
var Dirs = []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"}

// Library is a loaded libcublas.
type Library struct {
	// Path is what was loaded: a soname found on the loader's path, or a file.
	Path string
	fns  C.cublas_fns
}

// Load finds and loads cuBLAS. A non-empty override (a soname or a file, e.g. from GPUJOBS_CUBLAS)
// is the only candidate; otherwise Sonames are tried on the loader's path, then in Dirs. The error
// lists every attempt.
func Load(override string) (*Library, error) {
	var candidates []string
	if override != "" {
		candidates = []string{override}
	} else {
		candidates = append(candidates, Sonames...)
		for _, dir := range Dirs {
			for _, so := range Sonames {
				candidates = append(candidates, filepath.Join(dir, so))
			}
		}
	}
	var tried []string
	for _, c := range candidates {
		if strings.Contains(c, "/") {
			if _, err := os.Stat(c); err != nil {
				if override != "" {
					tried = append(tried, c+": "+err.Error())
				}
				continue
			}
		}
		l, err := open(c)
		if err == nil {
			return l, nil
		}
		tried = append(tried, err.Error())
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("cuBLAS not found: no %s on the loader's path or in %s", strings.Join(Sonames, ", "), strings.Join(Dirs, ", "))
	}
	return nil, fmt.Errorf("cuBLAS not loaded: %s", strings.Join(tried, "; "))
}

func open(path string) (*Library, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var clt *C.char
	if lt := ltSibling(path); lt != "" {
		clt = C.CString(lt)
		defer C.free(unsafe.Pointer(clt))
	}
	l := &Library{Path: path}
	if msg := C.open_lib(cpath, clt, &l.fns); msg != nil {
		return nil, fmt.Errorf("%s: %s", path, C.GoString(msg))
	}
	return l, nil
}

// ltSibling is libcublasLt.so.N beside a libcublas.so.N given as a file, or "".
func ltSibling(path string) string {
	dir, base := filepath.Split(path)
	if dir == "" || !strings.HasPrefix(base, "libcublas.so") {
		return ""
	}
	return filepath.Join(dir, "libcublasLt"+strings.TrimPrefix(base, "libcublas"))
}

// Handle is a cuBLAS context, bound to the CUDA context current when it was created. It is not
// safe for concurrent use.
type Handle struct {
	lib *Library
	h   unsafe.Pointer
}

// NewHandle creates a handle in the calling thread's current CUDA context.
func (l *Library) NewHandle() (*Handle, error) {
	h := &Handle{lib: l}
	if s := C.call_create(l.fns.create, &h.h); s != 0 {
		return nil, &Error{Op: "cublasCreate", Status: int(s)}
	}
	return h, nil
}

// Destroy releases the handle.
func (h *Handle) Destroy() error {
	if s := C.call_destroy(h.lib.fns.destroy, h.h); s != 0 {
		return &Error{Op: "cublasDestroy", Status: int(s)}
	}
	return nil
}

// SetStream makes the handle's work go to stream (a CUstream).
func (h *Handle) SetStream(stream unsafe.Pointer) error {
	if s := C.call_set_stream(h.lib.fns.set_stream, h.h, stream); s != 0 {
		return &Error{Op: "cublasSetStream", Status: int(s)}
	}
	return nil
}

// SetTF32 switches SGEMM between exact FP32 (the default) and TF32 tensor-core math.
func (h *Handle) SetTF32(on bool) error {
	mode := C.int(0) // CUBLAS_DEFAULT_MATH
	if on {
		mode = 3 // CUBLAS_TF32_TENSOR_OP_MATH
	}
	if s := C.call_set_math(h.lib.fns.set_math, h.h, mode); s != 0 {
		return &Error{Op: "cublasSetMathMode", Status: int(s)}
	}
	return nil
}

// Version is cuBLAS's version number, e.g. 130001 for 13.0.1.
func (h *Handle) Version() (int, error) {
	var v C.int
	if s := C.call_version(h.lib.fns.version, h.h, &v); s != 0 {
		return 0, &Error{Op: "cublasGetVersion", Status: int(s)}
	}
	return int(v), nil
}

// Sgemm is cublasSgemm: column-major C[m,n] = alpha·op(A)·op(B) + beta·C, with device pointers.
func (h *Handle) Sgemm(transA, transB bool, m, n, k int, alpha float32, a uintptr, lda int, b uintptr, ldb int, beta float32, c uintptr, ldc int) error {
	s := C.call_sgemm(h.lib.fns.sgemm, h.h, op(transA), op(transB), C.int(m), C.int(n), C.int(k), C.float(alpha),
		C.size_t(a), C.int(lda), C.size_t(b), C.int(ldb), C.float(beta), C.size_t(c), C.int(ldc))
	if s != 0 {
		return &Error{Op: "cublasSgemm", Status: int(s)}
	}
	return nil
}

func op(trans bool) C.int {
	if trans {
		return 1 // CUBLAS_OP_T
	}
	return 0 // CUBLAS_OP_N
}

// Error is a failed cuBLAS call and its cublasStatus_t.
type Error struct {
	Op     string
	Status int
}

func (e *Error) Error() string { return e.Op + ": " + StatusName(e.Status) }

// StatusName is the cublasStatus_t's name, e.g. CUBLAS_STATUS_ALLOC_FAILED.
func StatusName(s int) string {
	names := map[int]string{
		0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
		7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
		13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
		16: "CUBLAS_STATUS_LICENSE_ERROR",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("cublasStatus_t %d", s)
}
