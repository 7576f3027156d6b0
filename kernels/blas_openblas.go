//go:build openblas

package kernels

/*
#cgo LDFLAGS: -lopenblas
int openblas_get_num_threads(void);
*/
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"
)

// BLASName names the BLAS backend compiled in: OpenBLAS through gonum's netlib bindings, about
// ten times gonum's pure-Go SGEMM on the same CPU (see docs/BENCHMARKS.md).
const BLASName = "openblas"

var blasImpl blas.Float32 = netlib.Implementation{}

// BLASThreads is OpenBLAS's thread count. OpenBLAS ignores GOMAXPROCS: set OPENBLAS_NUM_THREADS
// to the worker's CPU budget.
func BLASThreads() int { return int(C.openblas_get_num_threads()) }
