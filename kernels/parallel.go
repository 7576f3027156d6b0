package kernels

import (
	"runtime"
	"sync"
)

// parallelFor splits [0,n) into one contiguous chunk per available CPU and runs fn on each,
// returning when all are done. Memory-bound loops (vector addition, im2col) need every core to
// reach the machine's bandwidth.
func parallelFor(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// parallelism is how many goroutines parallelFor uses.
func parallelism() int { return runtime.GOMAXPROCS(0) }
