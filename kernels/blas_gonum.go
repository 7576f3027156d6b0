//go:build !openblas

package kernels

import (
	"runtime"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BLASName names the BLAS backend compiled in: pure-Go gonum here, OpenBLAS with -tags openblas.
const BLASName = "gonum"

var blasImpl blas.Float32 = gonum.Implementation{}

// BLASThreads is how many threads the backend uses: gonum parallelises over GOMAXPROCS.
func BLASThreads() int { return runtime.GOMAXPROCS(0) }
