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
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
	"github.com/gpujobs/gpujobs/workflows"
)

// QueueState is what the scheduler knows about a task queue's workers.
type QueueState struct {
	// Pollers is the number of workers that polled the queue recently.
	Pollers int
	// Backlog is the approximate number of tasks waiting for a worker.
	Backlog int64
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
	// GPUJobsPerGPU is the per-GPU job limit of the GPU workers (GPU_JOBS_PER_GPU), so that the
	// GPU queue's expected wait counts the jobs that share a GPU. Default pool.DefaultJobsPerDevice.
	GPUJobsPerGPU int
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
	if o.GPUJobsPerGPU <= 0 {
		o.GPUJobsPerGPU = pool.DefaultJobsPerDevice
	}
	return o
}

// Scheduler is the Schedule local activity: it validates a job and picks its task queue from
// the device policy, the run-time estimates and the load of each queue.
type Scheduler struct {
	Registry  *kernels.Registry
	Inspector Inspector
	// Model predicts run times; it learns from the results the scheduler worker publishes.
	Model   *estimate.Model
	Logger  *zap.Logger
	Options SchedulerOptions
}

// Schedule validates the request and its params (invalid ones fail here, before any worker is
// busy) and decides where the job runs.
func (s *Scheduler) Schedule(ctx context.Context, req workflows.JobRequest) (workflows.Decision, error) {
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
	in := Situation{Request: req, Work: p.Work()}
	model := s.Model
	if model == nil {
		model = estimate.NewModel()
	}
	in.CPU.Prediction = model.Predict(req.JobType, estimate.CPU, in.Work)
	in.GPU.Prediction = model.Predict(req.JobType, estimate.GPU, in.Work)
	in.CPU.MeanJob, _ = model.MeanProcessing(estimate.CPU)
	in.GPU.MeanJob, _ = model.MeanProcessing(estimate.GPU)
	in.GPU.Share = pool.Share(in.Work.MemBytes, model.DeviceMemory(estimate.GPU), s.Options.withDefaults().GPUJobsPerGPU)
	if req.EffectiveDevice() != workflows.DeviceCPU && req.EffectiveDevice() != workflows.DeviceRequireGPU {
		// Only policies that choose need the queues' load.
		if in.GPU.Queue, err = s.Inspector.Inspect(ctx, workflows.GPUQueue); err != nil {
			return workflows.Decision{}, fmt.Errorf("inspect %s: %w", workflows.GPUQueue, err)
		}
		if in.CPU.Queue, err = s.Inspector.Inspect(ctx, workflows.CPUQueue); err != nil {
			return workflows.Decision{}, fmt.Errorf("inspect %s: %w", workflows.CPUQueue, err)
		}
	}
	d := Decide(in, s.Options)
	d.Params = params
	s.Logger.Debug("scheduled", zap.String("job_id", req.JobID), zap.String("queue", d.Queue), zap.String("reason", d.Reason))
	return d, nil
}

// Situation is everything a scheduling decision depends on.
type Situation struct {
	Request  workflows.JobRequest
	Work     kernels.Work
	CPU, GPU DeviceSituation
}

// DeviceSituation is one device kind's queue and predictions.
type DeviceSituation struct {
	Queue      QueueState
	Prediction estimate.Prediction
	// MeanJob is the mean processing time of recent jobs on this device kind (0: unknown).
	MeanJob time.Duration
	// Share is how many jobs of this one's size a worker runs at once: GPU jobs share a GPU
	// while their memory estimates fit, up to the per-GPU limit (pool.Share). 0 means 1.
	Share int
}

// Wait is the expected time before a worker starts a job queued now: the backlog shared by the
// pollers, each running Share jobs at once, each job taking MeanJob (or this job's own
// prediction when nothing was measured). MeanJob is measured on jobs that shared their GPU, so it
// already includes the slowdown of sharing.
func (d DeviceSituation) Wait() time.Duration {
	if d.Queue.Backlog <= 0 || d.Queue.Pollers <= 0 {
		return 0
	}
	per := d.MeanJob
	if per <= 0 {
		per = d.Prediction.Total
	}
	return time.Duration(d.Queue.Backlog) * per / time.Duration(d.Queue.Pollers*max(d.Share, 1))
}

// Finish is the expected time to the job's end: the wait plus the job itself.
func (d DeviceSituation) Finish() time.Duration { return d.Wait() + d.Prediction.Total }

// Decide is the scheduling policy, a pure function of the situation:
//   - cpu: the CPU queue.
//   - gpu!: the GPU queue, waiting at most RequireGPUWait for a GPU worker.
//   - gpu: the GPU queue, unless no GPU worker polls or the GPU's backlog would make the job end
//     later than on a CPU: then the CPU, labelled as a fallback with the reason.
//   - auto: whichever device is expected to finish the job first (wait + run + copies), so small
//     jobs whose copies and launch overhead dominate go to the CPU.
func Decide(in Situation, opts SchedulerOptions) workflows.Decision {
	o := opts.withDefaults()
	timeout := func(est time.Duration) time.Duration {
		if in.Request.Timeout > 0 {
			return in.Request.Timeout
		}
		return estimate.Timeout(est, o.TimeoutFactor, o.TimeoutFloor)
	}
	cpu := workflows.Decision{
		Queue:            workflows.CPUQueue,
		WorkerType:       workflows.WorkerTypeCPU,
		Work:             in.Work,
		HeartbeatTimeout: o.HeartbeatTimeout,
		EstimatedTime:    in.CPU.Prediction.Processing.Seconds(),
		EstimatedCPUTime: in.CPU.Prediction.Processing.Seconds(),
		StartToClose:     timeout(in.CPU.Prediction.Total),
		CPUStartToClose:  timeout(in.CPU.Prediction.Total),
	}
	gpu := cpu
	gpu.Queue, gpu.WorkerType = workflows.GPUQueue, workflows.WorkerTypeGPU
	gpu.EstimatedTime, gpu.StartToClose = in.GPU.Prediction.Processing.Seconds(), timeout(in.GPU.Prediction.Total)
	gpu.ScheduleToStart = o.PreferGPUWait

	compare := fmt.Sprintf("GPU expected to finish in %s (wait %s), CPU in %s (wait %s)",
		round(in.GPU.Finish()), round(in.GPU.Wait()), round(in.CPU.Finish()), round(in.CPU.Wait()))
	switch in.Request.EffectiveDevice() {
	case workflows.DeviceCPU:
		cpu.Reason = "device cpu requested"
		return cpu
	case workflows.DeviceRequireGPU:
		gpu.ScheduleToStart = o.RequireGPUWait
		gpu.Reason = fmt.Sprintf("device gpu! requested: waits up to %s for a GPU worker", o.RequireGPUWait)
		return gpu
	case workflows.DeviceGPU:
		switch {
		case in.GPU.Queue.Pollers == 0:
			return cpu.OnCPU("no GPU worker polling " + workflows.GPUQueue)
		case in.CPU.Queue.Pollers > 0 && in.GPU.Finish() > in.CPU.Finish() && in.GPU.Queue.Backlog > 0:
			return cpu.OnCPU(fmt.Sprintf("GPU backlog of %d jobs would make it slower than the CPU: %s", in.GPU.Queue.Backlog, compare))
		}
		gpu.Reason = fmt.Sprintf("GPU preferred, %d GPU worker(s) polling; %s", in.GPU.Queue.Pollers, compare)
		return gpu
	default: // auto
		switch {
		case in.GPU.Queue.Pollers == 0:
			cpu.Reason = "auto: no GPU worker polling " + workflows.GPUQueue
			return cpu
		case in.CPU.Queue.Pollers == 0:
			gpu.Reason = "auto: no CPU worker polling " + workflows.CPUQueue
			return gpu
		case in.GPU.Finish() < in.CPU.Finish():
			gpu.Reason = "auto: " + compare
			return gpu
		}
		cpu.Reason = "auto: " + compare
		return cpu
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
