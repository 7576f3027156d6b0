package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/estimate"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/workflows"
)

// QueueState is what the scheduler knows about a task queue's workers.
type QueueState struct {
	// Pollers is the number of workers that polled the queue recently.
	Pollers int
}

// Inspector reports the state of a task queue; the Temporal implementation asks DescribeTaskQueue.
type Inspector interface {
	Inspect(ctx context.Context, queue string) (QueueState, error)
}

// SchedulerOptions tune the scheduler. Zero values mean the documented defaults.
type SchedulerOptions struct {
	// HeartbeatTimeout of Execute: a worker silent this long is presumed dead and the job retried
	// elsewhere. Default 10s.
	HeartbeatTimeout time.Duration
	// PreferGPUWait is how long a GPU-preferring job waits for a GPU worker to start it before
	// falling back to the CPU. Default 2m.
	PreferGPUWait time.Duration
	// RequireGPUWait is how long a gpu! job waits for a GPU worker before failing. Default 10m.
	RequireGPUWait time.Duration
	// TimeoutFactor × estimate, at least TimeoutFloor, is an attempt's start-to-close timeout.
	// Defaults 20 and 5m.
	TimeoutFactor float64
	TimeoutFloor  time.Duration
}

func (o SchedulerOptions) withDefaults() SchedulerOptions {
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 10 * time.Second
	}
	if o.PreferGPUWait <= 0 {
		o.PreferGPUWait = 2 * time.Minute
	}
	if o.RequireGPUWait <= 0 {
		o.RequireGPUWait = 10 * time.Minute
	}
	if o.TimeoutFactor <= 0 {
		o.TimeoutFactor = 20
	}
	if o.TimeoutFloor <= 0 {
		o.TimeoutFloor = 5 * time.Minute
	}
	return o
}

// Scheduler is the Schedule local activity: it validates a job and picks its task queue.
type Scheduler struct {
	Registry  *kernels.Registry
	Inspector Inspector
	Logger    *zap.Logger
	Options   SchedulerOptions
}

// Schedule validates the request and its params (invalid ones fail here, before any worker is
// busy) and decides where the job runs.
func (s *Scheduler) Schedule(ctx context.Context, req workflows.JobRequest) (workflows.Decision, error) {
	o := s.Options.withDefaults()
	if err := req.Validate(); err != nil {
		return workflows.Decision{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrInvalidParams, err)
	}
	p, err := s.Registry.Decode(req.JobType, req.Params)
	if err != nil {
		return workflows.Decision{}, temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrInvalidParams, err)
	}
	params, err := json.Marshal(p)
	if err != nil {
		return workflows.Decision{}, fmt.Errorf("encode params: %w", err)
	}
	w := p.Work()
	cpuEst, gpuEst := estimate.DefaultCPU.Time(w), estimate.DefaultGPU.Time(w)
	if req.Timeout > 0 {
		cpuEst, gpuEst = min(cpuEst, req.Timeout), min(gpuEst, req.Timeout)
	}
	timeout := func(est time.Duration) time.Duration {
		if req.Timeout > 0 {
			return req.Timeout
		}
		return estimate.Timeout(est, o.TimeoutFactor, o.TimeoutFloor)
	}
	d := workflows.Decision{
		Params:           params,
		Work:             w,
		HeartbeatTimeout: o.HeartbeatTimeout,
		EstimatedCPUTime: cpuEst.Seconds(),
		CPUStartToClose:  timeout(cpuEst),
	}
	gpu := d
	gpu.Queue, gpu.WorkerType = workflows.GPUQueue, workflows.WorkerTypeGPU
	gpu.EstimatedTime, gpu.StartToClose = gpuEst.Seconds(), timeout(gpuEst)

	switch req.EffectiveDevice() {
	case workflows.DeviceCPU:
		d = d.OnCPU("")
		d.Fallback, d.Reason = "", "device cpu requested"
		return d, nil
	case workflows.DeviceRequireGPU:
		gpu.ScheduleToStart = o.RequireGPUWait
		gpu.Reason = fmt.Sprintf("device gpu! requested: waits up to %s for a GPU worker", o.RequireGPUWait)
		return gpu, nil
	}
	st, err := s.Inspector.Inspect(ctx, workflows.GPUQueue)
	if err != nil {
		return workflows.Decision{}, fmt.Errorf("inspect %s: %w", workflows.GPUQueue, err)
	}
	if st.Pollers == 0 {
		return d.OnCPU("no GPU worker polling " + workflows.GPUQueue), nil
	}
	gpu.ScheduleToStart = o.PreferGPUWait
	gpu.Reason = fmt.Sprintf("GPU preferred and %d GPU worker(s) polling %s", st.Pollers, workflows.GPUQueue)
	return gpu, nil
}
