// Package activities holds the side effects of a job: scheduling it (asking Temporal which
// workers are polling), executing its kernel on a worker, publishing its result to RabbitMQ.
// Activities are methods on structs that hold their dependencies.
package activities

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Runner runs kernels on one kind of device. The CPU runner is CPURunner; the GPU runner lives in
// kernels/cuda behind the cuda build tag.
type Runner interface {
	Device() jobs.DeviceInfo
	// Fits returns an error when a job of this size can never run here (not a transient shortage).
	Fits(w jobs.Work) error
	Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error)
}

// Executor is the Execute activity of a CPU or GPU worker.
type Executor struct {
	Kinds    *jobs.Kinds
	Runner   Runner
	WorkerID string
	Logger   *zap.Logger
	// HeartbeatEvery is how often progress is heartbeated while the kernel runs; 0 means 1s.
	HeartbeatEvery time.Duration
}

// Execute validates the job, runs its kernel and returns what it measured. Progress is
// heartbeated, and a cancellation stops the kernel within one step.
func (e *Executor) Execute(ctx context.Context, in workflows.ExecuteInput) (jobs.Result, error) {
	info := activity.GetInfo(ctx)
	log := e.Logger.With(zap.String("job_id", in.JobID), zap.String("job_type", in.JobType), zap.Int32("attempt", info.Attempt))
	spec, err := e.Kinds.Spec(in.JobType)
	if err != nil {
		return jobs.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrInvalidParams, err)
	}
	p, err := e.Kinds.Decode(in.JobType, in.Params)
	if err != nil {
		return jobs.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrInvalidParams, err)
	}
	if err := e.Runner.Fits(p.Work()); err != nil {
		return jobs.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrResourceExhausted, err)
	}

	dev := e.Runner.Device()
	start := time.Now()
	log.Info("job started", zap.String("device", dev.Name))
	hb := newHeartbeater(ctx, e.HeartbeatEvery)
	out, err := e.run(ctx, p, hb.report)
	hb.stop()
	end := time.Now()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			log.Info("job canceled", zap.Error(err))
			return jobs.Result{}, err // the SDK reports a canceled activity
		}
		log.Warn("job failed", zap.Error(err))
		var ae *temporal.ApplicationError
		var noImpl *jobs.NoImplementationError
		if errors.As(err, &noImpl) {
			return jobs.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrNoImplementation, err)
		}
		if errors.As(err, &ae) {
			return jobs.Result{}, err
		}
		return jobs.Result{}, temporal.NewApplicationErrorWithCause(err.Error(), jobs.ErrKernel, err)
	}
	res := jobs.Result{
		WorkerID:          e.WorkerID,
		WorkerType:        dev.WorkerType,
		Device:            dev.Name,
		ComputeCapability: dev.ComputeCapability,
		DeviceMemory:      dev.Memory,
		ProcessingTime:    out.ProcessingTime.Seconds(),
		SetupTime:         out.SetupTime.Seconds(),
		TransferTime:      out.TransferTime.Seconds(),
		QueueTime:         info.StartedTime.Sub(info.ScheduledTime).Seconds(),
		StartTime:         start,
		EndTime:           end,
		Metrics:           out.Metrics,
		RateMetric:        spec.Headline.Name,
		RateUnit:          spec.Headline.Unit,
		BLAS:              out.BLAS,
		GEMM:              out.GEMM,
		Threads:           out.Threads,
		Attempt:           int(info.Attempt),
	}
	if d := out.Device; d != nil { // a runner with several devices says which one ran the job
		res.Device, res.ComputeCapability, res.DeviceMemory = d.Name, d.ComputeCapability, d.Memory
	}
	log.Info("job completed", zap.Float64("processing_time", res.ProcessingTime))
	return res, nil
}

// run calls the runner and turns a panic into a non-retryable error: a bad kernel fails its job
// and the worker goes on serving the others.
func (e *Executor) run(ctx context.Context, p jobs.Params, report jobs.Reporter) (out jobs.Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.Logger.Error("kernel panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s kernel crashed: %v", p.Kind(), r), jobs.ErrKernelPanic, nil)
		}
	}()
	return e.Runner.Run(ctx, p, report)
}

// heartbeater records the latest progress as the activity's heartbeat once a tick, so a step
// that runs longer than the heartbeat timeout still heartbeats and a cancellation is noticed while
// it runs. Reports only store the progress: a job shorter than one tick costs no heartbeat RPC.
type heartbeater struct {
	mu   sync.Mutex
	last jobs.Progress
	done chan struct{}
	wg   sync.WaitGroup
}

func newHeartbeater(ctx context.Context, every time.Duration) *heartbeater {
	if every <= 0 {
		every = time.Second
	}
	h := &heartbeater{done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
				h.mu.Lock()
				p := h.last
				h.mu.Unlock()
				activity.RecordHeartbeat(ctx, p)
			}
		}
	}()
	return h
}

func (h *heartbeater) report(p jobs.Progress) {
	h.mu.Lock()
	h.last = p
	h.mu.Unlock()
}

func (h *heartbeater) stop() {
	close(h.done)
	h.wg.Wait()
}
