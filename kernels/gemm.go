package kernels

import (
	"context"

	"gonum.org/v1/gonum/blas"
)

// gemmBlockFLOPs bounds the work of one BLAS call of a long product: about 0.3 s with OpenBLAS
// on a current core pair, a few seconds with pure gonum. A cancellation is noticed between two
// calls, so it stops any product within about that long, whatever its size.
var gemmBlockFLOPs = 6e10

// gemmTile is the edge of the tiles a long product is split into: large enough that each call
// stays compute-bound (it reads 2·k·tile floats for 2·k·tile² FLOPs), small enough for
// gemmBlockFLOPs.
func gemmTile(k int) int {
	t := 256
	for 2*float64(k)*float64(2*t)*float64(2*t) <= gemmBlockFLOPs {
		t *= 2
	}
	return t
}

// sgemmNN computes the row-major product c[m×n] = a[m×k] · b[k×n] (leading dimensions lda, ldb,
// ldc) with the compiled-in BLAS, in tiles of c when it is long, and returns ctx's error as soon
// as it is done between two tiles (c is then partly computed).
func sgemmNN(ctx context.Context, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) error {
	if 2*float64(m)*float64(n)*float64(k) <= gemmBlockFLOPs {
		blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
		return ctx.Err()
	}
	t := gemmTile(k)
	for i0 := 0; i0 < m; i0 += t {
		rows := min(t, m-i0)
		for j0 := 0; j0 < n; j0 += t {
			if err := ctx.Err(); err != nil {
				return err
			}
			cols := min(t, n-j0)
			blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, rows, cols, k, 1,
				a[i0*lda:], lda, b[j0:], ldb, 0, c[i0*ldc+j0:], ldc)
		}
	}
	return ctx.Err()
}
