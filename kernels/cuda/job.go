//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/cuda/cublas"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// Impl is a kind's GPU implementation: it runs p on j's device, allocating, copying and
// launching through j, reports progress after each step and stops within a step once ctx is done.
type Impl func(ctx context.Context, j *Job, p jobs.Params, report jobs.Reporter) (jobs.Output, error)

// Builtin returns the GPU implementations of the built-in kinds. A program that adds a kind with
// a GPU implementation adds it to the returned registry and passes that to NewRunner.
func Builtin() *jobs.Impls[Impl] {
	impls := jobs.NewImpls[Impl](jobs.WorkerTypeGPU)
	for _, k := range []struct {
		kind string
		f    Impl
	}{
		{builtin.MatrixMultiplyKind, method((*Job).matrixMultiply)},
		{builtin.VectorAdditionKind, method((*Job).vectorAddition)},
		{builtin.ImageProcessingKind, method((*Job).imageProcessing)},
		{builtin.NeuralNetworkKind, method(func(j *Job, ctx context.Context, p *builtin.NeuralNetwork, report jobs.Reporter, _ *[]float32) (jobs.Output, error) {
			return j.neuralNetwork(ctx, p, report)
		})},
	} {
		if err := impls.Add(k.kind, k.f); err != nil {
			panic(fmt.Sprintf("built-in GPU implementations: %v", err)) // a constant table; a test covers it
		}
	}
	return impls
}

// method adapts a Job method written for one params type (and gpucheck's result buffer) to Impl.
func method[P jobs.Params](f func(*Job, context.Context, P, jobs.Reporter, *[]float32) (jobs.Output, error)) Impl {
	return func(ctx context.Context, j *Job, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
		tp, ok := p.(P)
		if !ok {
			return jobs.Output{}, fmt.Errorf("%s: GPU implementation takes %T, got %T", p.Kind(), *new(P), p)
		}
		return f(j, ctx, tp, report, j.result)
	}
}

// Job is one run on a device: the memory it allocated (freed at the end whatever happens), the
// slot it runs in, and the time its host↔device copies took.
type Job struct {
	d        *device
	s        *slot
	blas     *cublas.Handle // nil: SGEMM with the PTX kernels
	lease    *pool.Lease    // told of every allocation; nil outside the pool
	noSplitK bool           // RunOptions.NoSplitK
	ws       cu.DevicePtr   // split-K workspace, grown on demand
	wsBytes  int64
	allocs   []cu.DevicePtr
	transfer time.Duration
	// result, when set (gpucheck), receives the job's output buffer.
	result *[]float32
}

// gemmName is what SGEMM ran, for Output.GEMM.
func (j *Job) gemmName() string {
	if j.blas != nil {
		return GEMMCuBLAS
	}
	return GEMMPTX
}

// alloc allocates device memory that free releases.
func (j *Job) alloc(bytes int64) (cu.DevicePtr, error) {
	p, err := cu.MemAlloc(max(bytes, 4))
	if err != nil {
		return 0, check("cuMemAlloc "+jobs.FormatBytes(bytes), err)
	}
	j.allocs = append(j.allocs, p)
	if j.lease != nil {
		j.lease.Allocated(max(bytes, 4))
	}
	return p, nil
}

// allocAll allocates one buffer per size.
func (j *Job) allocAll(sizes ...int64) ([]cu.DevicePtr, error) {
	ptrs := make([]cu.DevicePtr, len(sizes))
	for i, n := range sizes {
		p, err := j.alloc(n)
		if err != nil {
			return nil, err
		}
		ptrs[i] = p
	}
	return ptrs, nil
}

// free waits for the job's work to end and releases its memory. The first error is returned: a
// kernel fault surfaces here when nothing synchronised after it.
func (j *Job) free() error {
	err := check("cuStreamSynchronize", j.s.stream.Synchronize())
	for _, p := range j.allocs {
		if ferr := check("cuMemFree", cu.MemFree(p)); err == nil {
			err = ferr
		}
	}
	j.allocs = nil
	return err
}

// upload copies host data to the device and waits for it; the time counts as transfer time.
func upload[T float32 | int32 | byte](j *Job, dst cu.DevicePtr, src []T) error {
	if len(src) == 0 {
		return nil
	}
	start := time.Now()
	bytes := int64(len(src)) * int64(unsafe.Sizeof(src[0]))
	if err := cu.MemcpyHtoDAsync(dst, unsafe.Pointer(&src[0]), bytes, j.s.stream); err != nil {
		return check("cuMemcpyHtoD "+jobs.FormatBytes(bytes), err)
	}
	err := check("cuStreamSynchronize", j.s.stream.Synchronize())
	j.transfer += time.Since(start)
	return err
}

// download copies device data to the host once the queued work is done; the copy counts as
// transfer time, the wait for the queue does not.
func download[T float32 | int32](j *Job, dst []T, src cu.DevicePtr) error {
	if len(dst) == 0 {
		return nil
	}
	if err := check("cuStreamSynchronize", j.s.stream.Synchronize()); err != nil {
		return err
	}
	start := time.Now()
	bytes := int64(len(dst)) * int64(unsafe.Sizeof(dst[0]))
	if err := cu.MemcpyDtoHAsync(unsafe.Pointer(&dst[0]), src, bytes, j.s.stream); err != nil {
		return check("cuMemcpyDtoH "+jobs.FormatBytes(bytes), err)
	}
	err := check("cuStreamSynchronize", j.s.stream.Synchronize())
	j.transfer += time.Since(start)
	return err
}

// zero clears n 4-byte words on the job's stream.
func (j *Job) zero(p cu.DevicePtr, n int64) error {
	return check("cuMemsetD32", cu.MemsetD32Async(p, 0, n, j.s.stream))
}

// Kernel arguments. gorgonia.org/cu's Launch copies 8 bytes from every argument's address, so
// each argument is held in a uint64, with 4-byte ones (int, float) in its low half.
type arg = uint64

func ptrArg(p cu.DevicePtr) arg { return arg(p) }
func intArg(v int) arg          { return arg(uint32(int32(v))) }
func i64Arg(v int64) arg        { return arg(v) }
func f32Arg(v float32) arg      { return arg(math.Float32bits(v)) }

type dim3 struct{ x, y, z int }

// launch queues kernel name on the job's stream.
func (j *Job) launch(name string, grid, block dim3, args ...arg) error {
	fn, ok := j.d.fns[name]
	if !ok {
		return fmt.Errorf("kernel %s is not loaded", name)
	}
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	g, b := grid, block
	g.y, g.z, b.y, b.z = max(g.y, 1), max(g.z, 1), max(b.y, 1), max(b.z, 1)
	return check("launch "+name, fn.Launch(g.x, g.y, g.z, b.x, b.y, b.z, 0, j.s.stream, params))
}

// gridFor sizes a grid-stride kernel's grid: enough blocks for n items, at most `resident`
// blocks per SM (a full GPU), at least one.
func (j *Job) gridFor(n int64, block, resident int) int {
	return int(max(1, min((n+int64(block)-1)/int64(block), int64(j.d.info.SMs*resident))))
}

// iterate runs steps 1..n of a timed loop: enqueue(i) queues step i. At most pipelineDepth
// steps are queued ahead of the device; each step is reported once it has finished on the device,
// and the loop stops at the first finished step after ctx is done. It returns the device time
// from before the first step to after the last, measured with CUDA events.
func (j *Job) iterate(ctx context.Context, kind string, n int, enqueue func(i int) error, report jobs.Reporter) (time.Duration, error) {
	s := j.s
	if err := s.start.Record(s.stream); err != nil {
		return 0, check("cuEventRecord", err)
	}
	next := 1 // the oldest step not yet reported
	finish := func() error {
		if err := check("cuEventSynchronize", s.ring[next%len(s.ring)].Synchronize()); err != nil {
			return err
		}
		report(jobs.Progress{Iteration: next, Total: n})
		err := stopped(ctx, kind, next, n)
		next++
		return err
	}
	for i := 1; i <= n; i++ {
		if err := enqueue(i); err != nil {
			return 0, err
		}
		if err := s.ring[i%len(s.ring)].Record(s.stream); err != nil {
			return 0, check("cuEventRecord", err)
		}
		if i-next+1 == len(s.ring) {
			if err := finish(); err != nil {
				return 0, err
			}
		}
	}
	if err := s.stop.Record(s.stream); err != nil {
		return 0, check("cuEventRecord", err)
	}
	for next <= n {
		if err := finish(); err != nil {
			return 0, err
		}
	}
	return j.elapsed()
}

// timed is the common end of a job that computes one output buffer: a warm-up step (kernels
// paged in, cuBLAS picks its algorithm), the setup time up to there (less the copies), the timed
// loop, and the output downloaded for its checksum (and for gpucheck through result). metric is
// reported as work / time / 1e9 (GFLOP/s or GB/s).
func (j *Job) timed(ctx context.Context, t0 time.Time, kind string, iterations int, step func(int) error, report jobs.Reporter,
	out cu.DevicePtr, n int64, result *[]float32, metric string, work float64, ran jobs.Output) (jobs.Output, error) {
	if err := step(0); err != nil {
		return jobs.Output{}, err
	}
	if err := check("cuStreamSynchronize", j.s.stream.Synchronize()); err != nil {
		return jobs.Output{}, err
	}
	setup := time.Since(t0) - j.transfer

	elapsed, err := j.iterate(ctx, kind, iterations, step, report)
	if err != nil {
		return jobs.Output{}, err
	}
	c := make([]float32, n)
	if err := download(j, c, out); err != nil {
		return jobs.Output{}, err
	}
	if result != nil {
		*result = c
	}
	ran.SetupTime, ran.ProcessingTime, ran.TransferTime = setup, elapsed, j.transfer
	ran.Metrics = map[string]float64{metric: jobs.Rate(work, elapsed) / 1e9, "checksum": kernels.Checksum(c)}
	return ran, nil
}

// elapsed waits for the stop event and returns the device time between start and stop.
func (j *Job) elapsed() (time.Duration, error) {
	if err := check("cuEventSynchronize", j.s.stop.Synchronize()); err != nil {
		return 0, err
	}
	ms, err := j.s.start.Elapsed(j.s.stop)
	if err != nil {
		return 0, check("cuEventElapsedTime", err)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// sgemm computes the row-major product C[m,n] = op(A)·op(B) with cuBLAS or the PTX kernels
// (which have NN and TN; NT exists only fused with the ReLU gradient, see mlpStep).
// cuBLAS is column-major, and a row-major matrix read as column-major is its transpose, so it
// computes Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap places and keep their transpose flags.
func (j *Job) sgemm(transA, transB bool, m, n, k int, a cu.DevicePtr, lda int, b cu.DevicePtr, ldb int, c cu.DevicePtr, ldc int) error {
	if j.blas != nil {
		return j.blas.Sgemm(transB, transA, n, m, k, 1, uintptr(b), ldb, uintptr(a), lda, 0, uintptr(c), ldc)
	}
	switch {
	case !transA && !transB:
		return j.ptxGemm(ptx.SgemmNN128, ptx.SgemmNN64, splitPlain, m, n, k, a, lda, b, ldb, c, ldc, 0, 0)
	case transA && !transB:
		return j.ptxGemm(ptx.SgemmTN128, ptx.SgemmTN64, noSplit, m, n, k, a, lda, b, ldb, c, ldc, 0, 0)
	}
	return errors.New("the PTX SGEMM has no plain A·Bᵀ kernel")
}

// How a PTX GEMM may be split along K: the split kernels read A and B like the NN kernels, and
// splitk_reduce applies a plain or a bias+ReLU epilogue (aux is the bias).
type splitEpilogue int

const (
	noSplit splitEpilogue = iota
	splitPlain
	splitBiasRelu
)

// ptxGemm launches one of the PTX GEMM kernels (all share one argument list) on the tiles
// ptx.PlanGemm picks, or, for a product too small to fill the GPU, the split-K kernel and its
// reduction.
func (j *Job) ptxGemm(large, small string, split splitEpilogue, m, n, k int, a cu.DevicePtr, lda int, b cu.DevicePtr, ldb int, c cu.DevicePtr, ldc int, aux, aux2 cu.DevicePtr) error {
	plan := ptx.PlanGemm(m, n, k, j.d.info.SMs, split != noSplit && !j.noSplitK, large, small)
	grid := dim3{x: ceilDiv(n, plan.Tile), y: ceilDiv(m, plan.Tile)}
	if plan.Splits < 2 {
		return j.launch(plan.Kernel, grid, dim3{x: plan.Threads},
			intArg(m), intArg(n), intArg(k), ptrArg(a), intArg(lda), ptrArg(b), intArg(ldb), ptrArg(c), intArg(ldc), ptrArg(aux), ptrArg(aux2))
	}
	ws, err := j.workspace(plan.Workspace(m, n))
	if err != nil {
		return err
	}
	grid.z = plan.Splits
	if err := j.launch(plan.SplitKernel, grid, dim3{x: plan.Threads},
		intArg(m), intArg(n), intArg(k), intArg(plan.KChunk), ptrArg(a), intArg(lda), ptrArg(b), intArg(ldb), ptrArg(ws)); err != nil {
		return err
	}
	var bias cu.DevicePtr
	relu := 0
	if split == splitBiasRelu {
		bias, relu = aux, 1
	}
	return j.launch(ptx.SplitKReduce, dim3{x: ceilDiv(n, 256), y: m}, dim3{x: 256},
		ptrArg(ws), intArg(plan.Splits), intArg(m), intArg(n), ptrArg(c), intArg(ldc), ptrArg(bias), intArg(relu))
}

// workspace returns at least bytes of device memory for split-K partial products, allocated
// once per job (and again if a later product needs more).
func (j *Job) workspace(bytes int64) (cu.DevicePtr, error) {
	if bytes > j.wsBytes {
		p, err := j.alloc(bytes)
		if err != nil {
			return 0, err
		}
		j.ws, j.wsBytes = p, bytes
	}
	return j.ws, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
