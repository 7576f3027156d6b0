// Package activities holds the side effects of a job: scheduling it (asking Temporal which
// workers are polling), executing its kernel on a worker, publishing its result to RabbitMQ.
// Activities are methods on structs that hold their dependencies.
package activities

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/workflows"
)

// DeviceInfo describes the hardware a Runner runs kernels on.
type DeviceInfo struct {
	WorkerType        string // gpu or cpu
	Name              string // e.g. "AMD EPYC 9B14, 2 threads" or "NVIDIA H100 80GB HBM3"
	ComputeCapability string // GPU only, e.g. "9.0"
	Memory            int64  // bytes the runner may use
}

// Runner runs kernels on one kind of device. The CPU runner is CPURunner; the GPU runner lives in
// kernels/cuda behind the cuda build tag.
type Runner interface {
	Device() DeviceInfo
	// Fits returns an error when a job of this size can never run here (not a transient shortage).
	Fits(w kernels.Work) error
	Run(ctx context.Context, p kernels.Params, report kernels.Reporter) (kernels.Output, error)
}

// Executor is the Execute activity of a CPU or GPU worker.
type Executor struct {
	Registry *kernels.Registry
	Runner   Runner
	WorkerID string
	Logger   *zap.Logger
	// HeartbeatEvery is how often progress is heartbeated while the kernel runs; 0 means 1s.
	HeartbeatEvery time.Duration
}

// Execute validates the job, runs its kernel and returns what it measured. Progress is
// heartbeated, and a cancellation stops the kernel within one step.
func (e *Executor) Execute(ctx context.Context, in workflows.ExecuteInput) (workflows.JobResult, error) {
	info := activity.GetInfo(ctx)
	log := e.Logger.With(zap.String("job_id", in.JobID), zap.String("job_type", in.JobType), zap.Int32("attempt", info.Attempt))
	p, err := e.Registry.Decode(in.JobType, in.Params)
	if err != nil {
		return workflows.JobResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrInvalidParams, err)
	}
	if err := e.Runner.Fits(p.Work()); err != nil {
		return workflows.JobResult{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrResourceExhausted, err)
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
			return workflows.JobResult{}, err // the SDK reports a canceled activity
		}
		log.Warn("job failed", zap.Error(err))
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			return workflows.JobResult{}, err
		}
		return workflows.JobResult{}, temporal.NewApplicationErrorWithCause(err.Error(), workflows.ErrKernel, err)
	}
	res := workflows.JobResult{
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
		BLAS:              out.Info["blas"],
		GEMM:              out.Info["gemm"],
		Attempt:           int(info.Attempt),
	}
	fmt.Sscan(out.Info["threads"], &res.Threads)
	deviceFromInfo(&res, out.Info)
	withTelemetry(&res, out.Telemetry)
	log.Info("job completed", zap.Float64("processing_time", res.ProcessingTime))
	return res, nil
}

// deviceFromInfo lets a runner with several devices (one GPU per job) say which one ran the job:
// Output.Info's device, compute_capability and device_memory override the runner's description.
func deviceFromInfo(res *workflows.JobResult, info map[string]string) {
	if name := info["device"]; name != "" {
		res.Device = name
	}
	if cc := info["compute_capability"]; cc != "" {
		res.ComputeCapability = cc
	}
	if mem, err := strconv.ParseInt(info["device_memory"], 10, 64); err == nil && mem > 0 {
		res.DeviceMemory = mem
	}
}

// run calls the runner and turns a panic into a non-retryable error: a bad kernel fails its job
// and the worker goes on serving the others.
func (e *Executor) run(ctx context.Context, p kernels.Params, report kernels.Reporter) (out kernels.Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			e.Logger.Error("kernel panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s kernel crashed: %v", p.Kind(), r), workflows.ErrKernelPanic, nil)
		}
	}()
	return e.Runner.Run(ctx, p, report)
}

// heartbeater records the latest progress as the activity's heartbeat once a tick, so a step
// that runs longer than the heartbeat timeout still heartbeats and a cancellation is noticed while
// it runs. Reports only store the progress: a job shorter than one tick costs no heartbeat RPC.
type heartbeater struct {
	mu   sync.Mutex
	last kernels.Progress
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

func (h *heartbeater) report(p kernels.Progress) {
	h.mu.Lock()
	h.last = p
	h.mu.Unlock()
}

func (h *heartbeater) stop() {
	close(h.done)
	h.wg.Wait()
}
