package kernels

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// parallelFor splits [0,n) into one contiguous chunk per available CPU and runs fn on each,
// returning when all are done. Memory-bound loops (vector addition, im2col) need every core to
// reach the machine's bandwidth. A panic in a chunk is raised again in the caller's goroutine
// once every chunk is done, where the worker's recover turns it into the job's KernelPanic: a
// panic in a goroutine of its own would end the whole worker process.
func parallelFor(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var (
		wg       sync.WaitGroup
		panicked atomic.Pointer[chunkPanic]
	)
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, &chunkPanic{value: r, stack: debug.Stack()})
				}
			}()
			fn(lo, hi)
		}()
	}
	wg.Wait()
	if p := panicked.Load(); p != nil {
		panic(p)
	}
}

// chunkPanic is a panic of one of parallelFor's goroutines, with the stack where it happened.
type chunkPanic struct {
	value any
	stack []byte
}

func (p *chunkPanic) String() string { return fmt.Sprint(p.value) }

// Stack is where the panic happened, for the worker's log.
func (p *chunkPanic) Stack() []byte { return p.stack }

// parallelism is how many goroutines parallelFor uses.
func parallelism() int { return runtime.GOMAXPROCS(0) }
