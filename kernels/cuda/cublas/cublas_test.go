//go:build cgo

package cublas_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
)

// Loading needs no GPU: only creating a handle does. Where Debian's libcublas11 is installed
// (nvidia-cuda-toolkit pulls it in), the search must find it and resolve every entry point.
func TestLoad(t *testing.T) {
	l, err := cublas.Load("")
	if err != nil {
		if !strings.Contains(err.Error(), "libcublas.so") {
			t.Errorf("error %q does not name what was tried", err)
		}
		t.Skipf("no cuBLAS on this machine: %v", err)
	}
	t.Logf("loaded %s", l.Path)
}

func TestLoadOverride(t *testing.T) {
	_, err := cublas.Load("/nonexistent/libcublas.so.99")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/libcublas.so.99") {
		t.Errorf("Load(missing file) error = %v, want it to name the file", err)
	}
	// A library that is not cuBLAS loads but lacks the entry points.
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, statErr := os.Stat(libc); statErr == nil {
		_, err = cublas.Load(libc)
		if err == nil || !strings.Contains(err.Error(), "cublasSgemm_v2") {
			t.Errorf("Load(libc) error = %v, want missing entry points", err)
		}
	}
	if l, err := cublas.Load(filepath.Join("/usr/lib/x86_64-linux-gnu", "libcublas.so.11")); err == nil {
		t.Logf("override by path works: %s", l.Path)
	}
}

func TestStatusName(t *testing.T) {
	if got := cublas.StatusName(3); got != "CUBLAS_STATUS_ALLOC_FAILED" {
		t.Errorf("StatusName(3) = %s", got)
	}
	if got := (&cublas.Error{Op: "cublasSgemm", Status: 99}).Error(); got != "cublasSgemm: cublasStatus_t 99" {
		t.Errorf("unknown status: %s", got)
	}
}
