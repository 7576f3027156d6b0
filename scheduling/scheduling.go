// Package scheduling decides where a job runs: on the GPU or the CPU task queue, with which
// timeouts, and why. Everything here is plain Go over plain values (the job, its work estimate,
// the learned run-time predictions, each queue's pollers and backlog): no Temporal, no I/O, so the
// policy is tested as a function. The Schedule activity gathers the situation and calls Decide.
//
// A Strategy chooses between the devices for the policies that leave a choice (auto and gpu);
// Default is gpujobs's own, and a program can pass another to the scheduler worker. The hard
// policies are not a strategy's to change: cpu always runs on a CPU worker, gpu! only on a GPU one.
package scheduling

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// QueueState is what the scheduler knows about a task queue's workers.
type QueueState struct {
	// Pollers is the number of workers that polled the queue recently.
	Pollers int
	// Backlog is the approximate number of tasks waiting for a worker.
	Backlog int64
}

// Situation is everything a scheduling decision depends on.
type Situation struct {
	Request  jobs.Request
	Work     jobs.Work
	CPU, GPU DeviceSituation
}

// DeviceSituation is one device kind's queue and predictions.
type DeviceSituation struct {
	Queue      QueueState
	Prediction estimate.Prediction
	// MeanJob is the mean processing time of recent jobs on this device kind (0: unknown).
	MeanJob time.Duration
	// Share is how many jobs of this one's size a worker runs at once: GPU jobs share a GPU
	// while their memory estimates fit, up to the per-GPU limit (GPUShare). 0 means 1.
	Share int
}

// Wait is the expected time before a worker starts a job queued now: the backlog shared by the
// pollers, each running Share jobs at once, each job taking MeanJob (or this job's own
// prediction when nothing was measured). MeanJob is measured on jobs that shared their GPU, so
// it already includes the slowdown of sharing.
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

// GPUShare is how many jobs of w's size a GPU worker runs at once, by the rule its runner
// admits them with (jobs.GPUShare): as many as fit beside each other in the memory of the GPUs
// (gpuMemory, learned from results; 0 before any: one), at most o.GPUJobsPerGPU.
func GPUShare(w jobs.Work, gpuMemory int64, o Options) int {
	return jobs.GPUShare(w.MemBytes, gpuMemory, o.WithDefaults().GPUJobsPerGPU)
}

// Finish is the expected time to the job's end: the wait plus the job itself.
func (d DeviceSituation) Finish() time.Duration { return d.Wait() + d.Prediction.Total }

// Options tune the scheduler. Zero values mean the documented defaults.
type Options struct {
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
	// GPU queue's expected wait counts the jobs that share a GPU. Default jobs.DefaultJobsPerGPU.
	GPUJobsPerGPU int
}

// WithDefaults returns o with its zero fields set to the documented defaults.
func (o Options) WithDefaults() Options {
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
		o.GPUJobsPerGPU = jobs.DefaultJobsPerGPU
	}
	return o
}

// Decision is what the scheduler decided: the Schedule activity's result.
type Decision struct {
	// Queue is the task queue Execute runs on: jobs.GPUQueue or jobs.CPUQueue.
	Queue      string `json:"queue"`
	WorkerType string `json:"worker_type"`
	// Fallback says why a GPU-preferring job goes to the CPU; empty when it does not.
	Fallback string `json:"fallback,omitempty"`
	// Reason is the scheduler's explanation of its choice.
	Reason string `json:"reason"`
	// Params are the validated params with defaults filled in.
	Params json.RawMessage `json:"params"`
	Work   jobs.Work       `json:"work"`
	// EstimatedTime is the expected processing time on the chosen device, seconds.
	EstimatedTime float64 `json:"estimated_time"`
	// EstimatedCPUTime is the expected processing time on a CPU worker, for a later fallback.
	EstimatedCPUTime float64 `json:"estimated_cpu_time"`
	// StartToClose bounds one attempt of Execute.
	StartToClose time.Duration `json:"start_to_close"`
	// CPUStartToClose bounds an attempt on the CPU, if the job falls back there later.
	CPUStartToClose time.Duration `json:"cpu_start_to_close"`
	// Wait and Total are the predictions at scheduling: how long the job waits on Queue for a
	// worker (its backlog shared by the pollers), and how long it then takes there (kernel,
	// copies, setup). CPUWait and CPUTotal are the CPU's, for a later fallback.
	Wait     time.Duration `json:"wait,omitempty"`
	Total    time.Duration `json:"total,omitempty"`
	CPUWait  time.Duration `json:"cpu_wait,omitempty"`
	CPUTotal time.Duration `json:"cpu_total,omitempty"`
	// ScheduleToStart bounds the wait for a worker on Queue; 0 means no bound.
	ScheduleToStart  time.Duration `json:"schedule_to_start,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
}

// OnCPU returns the decision moved to the CPU queue, with the reason recorded as a fallback.
func (d Decision) OnCPU(reason string) Decision {
	d.Queue, d.WorkerType = jobs.CPUQueue, jobs.WorkerTypeCPU
	d.Fallback = reason
	d.Reason = "fallback to CPU: " + reason
	d.EstimatedTime = d.EstimatedCPUTime
	d.Wait, d.Total = d.CPUWait, d.CPUTotal
	d.StartToClose = d.CPUStartToClose
	d.ScheduleToStart = 0
	return d
}

// Choice is what a Strategy picked for a job whose policy leaves the device open.
type Choice struct {
	// WorkerType is jobs.WorkerTypeGPU or jobs.WorkerTypeCPU.
	WorkerType string
	// Fallback, for a job that prefers a GPU (policy gpu) sent to a CPU, says why. Decide fills
	// one in from Reason when a strategy leaves it empty: such a run is always labelled.
	Fallback string
	// Reason explains the choice; it is shown in the job's status and result.
	Reason string
}

// Strategy chooses the device of jobs whose policy is auto or gpu. It must be a pure function
// of the situation: it runs inside the Schedule activity, once per job.
type Strategy interface {
	Choose(in Situation) Choice
}

// StrategyFunc adapts a function to Strategy.
type StrategyFunc func(Situation) Choice

// Choose calls f.
func (f StrategyFunc) Choose(in Situation) Choice { return f(in) }

// Decide is the scheduling decision, a pure function of the situation:
//   - cpu: the CPU queue.
//   - gpu!: the GPU queue, waiting at most RequireGPUWait for a GPU worker.
//   - gpu and auto: what the strategy chooses (Default when s is nil); a GPU choice waits at most
//     PreferGPUWait for a GPU worker before the workflow falls back to the CPU.
func Decide(in Situation, s Strategy, opts Options) Decision {
	o := opts.WithDefaults()
	timeout := func(est time.Duration) time.Duration {
		if in.Request.Timeout > 0 {
			return in.Request.Timeout
		}
		if in.Work.Timeout > 0 {
			return in.Work.Timeout
		}
		return estimate.Timeout(est, o.TimeoutFactor, o.TimeoutFloor)
	}
	cpu := Decision{
		Queue:            jobs.CPUQueue,
		WorkerType:       jobs.WorkerTypeCPU,
		Work:             in.Work,
		HeartbeatTimeout: o.HeartbeatTimeout,
		EstimatedTime:    in.CPU.Prediction.Processing.Seconds(),
		EstimatedCPUTime: in.CPU.Prediction.Processing.Seconds(),
		Wait:             in.CPU.Wait(),
		Total:            in.CPU.Prediction.Total,
		CPUWait:          in.CPU.Wait(),
		CPUTotal:         in.CPU.Prediction.Total,
		StartToClose:     timeout(in.CPU.Prediction.Total),
		CPUStartToClose:  timeout(in.CPU.Prediction.Total),
	}
	gpu := cpu
	gpu.Queue, gpu.WorkerType = jobs.GPUQueue, jobs.WorkerTypeGPU
	gpu.EstimatedTime, gpu.StartToClose = in.GPU.Prediction.Processing.Seconds(), timeout(in.GPU.Prediction.Total)
	gpu.ScheduleToStart = o.PreferGPUWait
	gpu.Wait, gpu.Total = in.GPU.Wait(), in.GPU.Prediction.Total

	policy := in.Request.EffectiveDevice()
	if policy == jobs.DeviceAuto && in.Work.GPUs > 0 {
		// A job that asks for GPUs (a GPU command) prefers a GPU worker; if it runs on a CPU
		// instead, that is a labelled fallback.
		policy = jobs.DeviceGPU
		in.Request.Device = jobs.DeviceGPU
	}
	switch policy {
	case jobs.DeviceCPU:
		cpu.Reason = "device cpu requested"
		return cpu
	case jobs.DeviceRequireGPU:
		gpu.ScheduleToStart = o.RequireGPUWait
		gpu.Reason = fmt.Sprintf("device gpu! requested: waits up to %s for a GPU worker", o.RequireGPUWait)
		return gpu
	}
	if s == nil {
		s = Default{}
	}
	c := s.Choose(in)
	if c.WorkerType == jobs.WorkerTypeGPU {
		gpu.Reason = c.Reason
		return gpu
	}
	if policy == jobs.DeviceGPU {
		if c.Fallback == "" {
			c.Fallback = "the scheduling strategy chose the CPU: " + c.Reason
		}
		return cpu.OnCPU(c.Fallback)
	}
	cpu.Reason = c.Reason
	return cpu
}

// Default is gpujobs's own strategy:
//   - gpu: the GPU, unless no GPU worker polls or the GPU's backlog would make the job end later
//     than on a CPU: then the CPU, labelled as a fallback with the reason.
//   - auto: whichever device is expected to finish the job first (wait + run + copies), so small
//     jobs whose copies and launch overhead dominate go to the CPU.
type Default struct{}

// Choose implements Strategy.
func (Default) Choose(in Situation) Choice {
	compare := fmt.Sprintf("GPU expected to finish in %s (wait %s), CPU in %s (wait %s)",
		round(in.GPU.Finish()), round(in.GPU.Wait()), round(in.CPU.Finish()), round(in.CPU.Wait()))
	onCPU := func(reason string) Choice {
		return Choice{WorkerType: jobs.WorkerTypeCPU, Fallback: reason, Reason: reason}
	}
	if in.Request.EffectiveDevice() == jobs.DeviceGPU {
		switch {
		case in.GPU.Queue.Pollers == 0:
			return onCPU("no GPU worker polling " + jobs.GPUQueue)
		case in.CPU.Queue.Pollers > 0 && in.GPU.Finish() > in.CPU.Finish() && in.GPU.Queue.Backlog > 0:
			return onCPU(fmt.Sprintf("GPU backlog of %d jobs would make it slower than the CPU: %s", in.GPU.Queue.Backlog, compare))
		}
		return Choice{WorkerType: jobs.WorkerTypeGPU, Reason: fmt.Sprintf("GPU preferred, %d GPU worker(s) polling; %s", in.GPU.Queue.Pollers, compare)}
	}
	switch {
	case in.GPU.Queue.Pollers == 0:
		return Choice{WorkerType: jobs.WorkerTypeCPU, Reason: "auto: no GPU worker polling " + jobs.GPUQueue}
	case in.CPU.Queue.Pollers == 0:
		return Choice{WorkerType: jobs.WorkerTypeGPU, Reason: "auto: no CPU worker polling " + jobs.CPUQueue}
	case in.GPU.Finish() < in.CPU.Finish():
		return Choice{WorkerType: jobs.WorkerTypeGPU, Reason: "auto: " + compare}
	}
	return Choice{WorkerType: jobs.WorkerTypeCPU, Reason: "auto: " + compare}
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
