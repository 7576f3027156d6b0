package kernels

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// withBlockFLOPs lowers the tiling threshold for a test, so small products are tiled too.
func withBlockFLOPs(t *testing.T, v float64) {
	old := gemmBlockFLOPs
	gemmBlockFLOPs = v
	t.Cleanup(func() { gemmBlockFLOPs = old })
}

func TestTiledProductEqualsOneCall(t *testing.T) {
	withBlockFLOPs(t, 1e5)
	for _, sh := range []struct{ m, n, k int }{{300, 200, 50}, {257, 513, 17}, {1, 700, 3}} {
		a := builtin.UniformSlice(1, 1, sh.m*sh.k)
		b := builtin.UniformSlice(1, 2, sh.k*sh.n)
		want, got := make([]float32, sh.m*sh.n), make([]float32, sh.m*sh.n)
		blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, sh.m, sh.n, sh.k, 1, a, sh.k, b, sh.n, 0, want, sh.n)
		if err := sgemmNN(context.Background(), sh.m, sh.n, sh.k, a, sh.k, b, sh.n, got, sh.n); err != nil {
			t.Fatal(err)
		}
		if e := MaxRelErr(got, want, 1); e > 1e-5 { // OpenBLAS may block a tile differently from the whole
			t.Errorf("%+v: tiled product differs by %g", sh, e)
		}
	}
}

// A product that a cancel reaches between tiles stops there, the warm-up of a job included.
func TestLongProductStopsBetweenTiles(t *testing.T) {
	withBlockFLOPs(t, 1e5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := make([]float32, 512*512)
	a := builtin.UniformSlice(1, 1, 512*512)
	if err := sgemmNN(ctx, 512, 512, 512, a, 512, a, 512, c, 512); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	for _, v := range c {
		if v != 0 {
			t.Fatal("a canceled product computed a tile")
		}
	}
	_, err := MatrixMultiply(ctx, &builtin.MatrixMultiply{Size: 512, Iterations: 100, Seed: 1}, func(p jobs.Progress) {
		t.Errorf("step %d reported after the cancel", p.Iteration)
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "after step 0 of 100") {
		t.Errorf("err %v, want a stop before the first step", err)
	}
}

// A panic in one of parallelFor's goroutines reaches the caller, where the worker recovers it.
func TestParallelForPanicReachesTheCaller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(*chunkPanic).String(), "boom") || len(r.(*chunkPanic).Stack()) == 0 {
			t.Errorf("recovered %v, want the chunk's panic with its stack", r)
		}
	}()
	parallelFor(1000, func(lo, hi int) {
		panic("boom")
	})
	t.Error("parallelFor returned after a panic")
}
