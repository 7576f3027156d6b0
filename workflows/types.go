// Package workflows holds JobWorkflow, the orchestration of one job: schedule it onto the GPU or
// CPU task queue, execute it there, publish its result. Workflow code is deterministic: it makes
// decisions only from its input and from activity results, and does all I/O through activities.
//
// The types here (JobRequest, JobResult) are the system's contract: the starter sends a
// JobRequest, the monitor reads JobResults from RabbitMQ.
package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/kernels"
)

// Task queues.
const (
	// JobQueue is where the scheduler worker runs JobWorkflow and its local activities.
	JobQueue = "job_queue"
	// GPUQueue is polled by GPU workers, one activity slot per GPU.
	GPUQueue = "gpu_queue"
	// CPUQueue is polled by CPU workers.
	CPUQueue = "cpu_queue"
)

// Activity names, shared by the workflow (which calls them by name) and the workers (which
// register them), so neither package imports the other's implementation.
const (
	ScheduleActivity = "Schedule"
	ExecuteActivity  = "Execute"
	PublishActivity  = "PublishResult"
)

// Error types of the application errors that jobs fail with.
const (
	// ErrInvalidParams: the job's params are wrong. Never retried.
	ErrInvalidParams = "InvalidParams"
	// ErrResourceExhausted: the job can never fit the worker's memory. Never retried.
	ErrResourceExhausted = "ResourceExhausted"
	// ErrKernelPanic: the kernel crashed; the worker survived. Never retried: it would crash again.
	ErrKernelPanic = "KernelPanic"
	// ErrKernel: the kernel failed (e.g. a CUDA error). Retried.
	ErrKernel = "KernelError"
	// ErrNoWorker: no worker of the required kind took the job in time.
	ErrNoWorker = "NoWorker"
	// ErrTimeout: the job ran past its timeout.
	ErrTimeout = "Timeout"
	// ErrCanceled: the job was canceled.
	ErrCanceled = "Canceled"
)

// Device policies a job can ask for.
const (
	DeviceGPU        = "gpu"  // prefer a GPU, fall back to CPU (labelled) when none is available or it is swamped
	DeviceRequireGPU = "gpu!" // only a GPU; wait for one, fail clearly when none comes
	DeviceCPU        = "cpu"  // CPU only
	DeviceAuto       = "auto" // whichever is expected to finish first
	DefaultDevice    = DeviceAuto
)

// Worker types: the kind of hardware that really ran a job.
const (
	WorkerTypeGPU = "gpu"
	WorkerTypeCPU = "cpu"
)

// Job statuses in results.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
)

// Priorities map onto Temporal's task-queue priority keys: 1 is dispatched first.
const (
	MinPriority     = 1
	MaxPriority     = 5
	DefaultPriority = 3
)

const (
	jobIDPrefix = "job-"
	jobIDHexLen = 12
)

// Devices lists the device policies, for help texts and errors.
var Devices = []string{DeviceGPU, DeviceRequireGPU, DeviceCPU, DeviceAuto}

// JobRequest is the workflow's input.
type JobRequest struct {
	JobID   string          `json:"job_id"`
	JobType string          `json:"job_type"`
	Params  json.RawMessage `json:"params,omitempty"`
	// Device is the device policy: auto (default), gpu, gpu! or cpu.
	Device string `json:"device,omitempty"`
	// Priority is 1 (first) to 5 (last); 0 means the default, 3.
	Priority int `json:"priority,omitempty"`
	// Tenant groups jobs for fair sharing of the task queues.
	Tenant string `json:"tenant,omitempty"`
	// Timeout overrides the start-to-close timeout derived from the job's estimate.
	Timeout time.Duration `json:"timeout,omitempty"`
	// SubmitTime is when the starter submitted the job.
	SubmitTime time.Time `json:"submit_time"`
}

// Validate checks the request's own fields (the params are checked by the Schedule activity,
// against the kernel registry).
func (r JobRequest) Validate() error {
	if err := ValidateJobID(r.JobID); err != nil {
		return err
	}
	if r.JobType == "" {
		return fmt.Errorf("job_type is empty: known types are %s", strings.Join(kernels.Default().Kinds(), ", "))
	}
	if err := ValidateDevice(r.Device); err != nil {
		return err
	}
	if r.Priority != 0 && (r.Priority < MinPriority || r.Priority > MaxPriority) {
		return fmt.Errorf("invalid priority: %d is out of range, allowed %d..%d", r.Priority, MinPriority, MaxPriority)
	}
	if len(r.Tenant) > 64 {
		return fmt.Errorf("invalid tenant: %d characters, allowed 1..64", len(r.Tenant))
	}
	if r.Timeout < 0 {
		return fmt.Errorf("invalid timeout: %s, must be positive", r.Timeout)
	}
	return nil
}

// ValidateDevice accepts the device policies and "" (the default).
func ValidateDevice(d string) error {
	switch d {
	case "", DeviceGPU, DeviceRequireGPU, DeviceCPU, DeviceAuto:
		return nil
	}
	return fmt.Errorf("invalid device %q: allowed %s", d, strings.Join(Devices, ", "))
}

// ValidateJobID checks the job-<12 hex> form.
func ValidateJobID(id string) error {
	hex, ok := strings.CutPrefix(id, jobIDPrefix)
	if ok && len(hex) == jobIDHexLen && strings.Trim(hex, "0123456789abcdef") == "" {
		return nil
	}
	return fmt.Errorf("invalid job_id %q: want %s followed by %d lowercase hex digits", id, jobIDPrefix, jobIDHexLen)
}

// EffectiveDevice returns the request's device policy with the default applied.
func (r JobRequest) EffectiveDevice() string {
	if r.Device == "" {
		return DefaultDevice
	}
	return r.Device
}

// EffectivePriority returns the request's priority with the default applied.
func (r JobRequest) EffectivePriority() int {
	if r.Priority == 0 {
		return DefaultPriority
	}
	return r.Priority
}

// Decision is what the Schedule activity decided.
type Decision struct {
	// Queue is the task queue Execute runs on: GPUQueue or CPUQueue.
	Queue      string `json:"queue"`
	WorkerType string `json:"worker_type"`
	// Fallback says why a GPU-preferring job goes to the CPU; empty when it does not.
	Fallback string `json:"fallback,omitempty"`
	// Reason is the scheduler's explanation of its choice.
	Reason string `json:"reason"`
	// Params are the validated params with defaults filled in.
	Params json.RawMessage `json:"params"`
	Work   kernels.Work    `json:"work"`
	// EstimatedTime is the expected processing time on the chosen device, seconds.
	EstimatedTime float64 `json:"estimated_time"`
	// EstimatedCPUTime is the expected processing time on a CPU worker, for a later fallback.
	EstimatedCPUTime float64 `json:"estimated_cpu_time"`
	// StartToClose bounds one attempt of Execute.
	StartToClose time.Duration `json:"start_to_close"`
	// CPUStartToClose bounds an attempt on the CPU, if the job falls back there later.
	CPUStartToClose time.Duration `json:"cpu_start_to_close"`
	// ScheduleToStart bounds the wait for a worker on Queue; 0 means no bound.
	ScheduleToStart  time.Duration `json:"schedule_to_start,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
}

// JobResult is what the workflow returns and publishes to result_queue. Field names are the
// seed system's, plus what gpujobs adds; they are the monitor's input and documented in the README.
type JobResult struct {
	JobID      string          `json:"job_id"`
	JobType    string          `json:"job_type"`
	Params     json.RawMessage `json:"params,omitempty"`
	WorkerID   string          `json:"worker_id,omitempty"`
	WorkerType string          `json:"worker_type,omitempty"` // gpu or cpu: the device that really ran it
	// Device names the hardware, e.g. "AMD EPYC 9B14, 2 threads" or "NVIDIA H100 80GB HBM3".
	Device    string `json:"device,omitempty"`
	Status    string `json:"status"` // completed, failed or canceled
	Error     string `json:"error,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	// Times in seconds: the kernel alone, allocation and input generation, host↔device copies,
	// and the wait between scheduling and a worker starting the job.
	ProcessingTime float64   `json:"processing_time"`
	SetupTime      float64   `json:"setup_time"`
	TransferTime   float64   `json:"transfer_time,omitempty"`
	QueueTime      float64   `json:"queue_time"`
	SubmitTime     time.Time `json:"submit_time"`
	StartTime      time.Time `json:"start_time,omitzero"`
	EndTime        time.Time `json:"end_time,omitzero"`
	// Metrics are the job type's numbers: gflops, gbps, final_loss, samples_per_sec, checksum, ...
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Fallback is set when a GPU-preferring job ran on a CPU, and says why.
	Fallback string `json:"fallback,omitempty"`
	// BLAS names the CPU BLAS backend (openblas or gonum); GEMM the GPU GEMM (cublas or ptx).
	BLAS    string `json:"blas,omitempty"`
	GEMM    string `json:"gemm,omitempty"`
	Threads int    `json:"threads,omitempty"`
	// RequestedDevice is the policy the job asked for: auto, gpu, gpu! or cpu.
	RequestedDevice string  `json:"requested_device,omitempty"`
	Priority        int     `json:"priority,omitempty"`
	Tenant          string  `json:"tenant,omitempty"`
	EstimatedTime   float64 `json:"estimated_time,omitempty"`
	ScheduleReason  string  `json:"schedule_reason,omitempty"`
	Attempt         int     `json:"attempt,omitempty"`
	// GPU details, when a GPU ran the job.
	ComputeCapability string `json:"compute_capability,omitempty"`
	DeviceMemory      int64  `json:"device_memory,omitempty"`
	// GPU telemetry from NVML while the job ran, when the worker has NVML: the mean and peak
	// SM utilisation (percent of time a kernel ran) and the peak memory in use, bytes. They are
	// the device's figures: with jobs sharing the GPU, the others' work is in them too.
	GPUUtilizationMean *float64 `json:"gpu_utilization_mean,omitempty"`
	GPUUtilizationPeak *float64 `json:"gpu_utilization_peak,omitempty"`
	GPUMemoryPeak      int64    `json:"gpu_memory_peak,omitempty"`
}

// Rate returns the job's headline rate and its unit: GFLOP/s for compute jobs, GB/s for vector
// addition, samples/s when neither is reported.
func (r JobResult) Rate() (float64, string) {
	if v, ok := r.Metrics["gbps"]; ok {
		return v, "GB/s"
	}
	if v, ok := r.Metrics["gflops"]; ok {
		return v, "GFLOP/s"
	}
	if v, ok := r.Metrics["samples_per_sec"]; ok {
		return v, "samples/s"
	}
	return 0, ""
}

// Custom search attributes, registered by the dev server (and by the deployment's setup on a
// real cluster): the starter sets them when it submits a job, the workflow sets WorkerType once
// it knows where the job goes. `starter list` filters on them.
var (
	SearchJobType    = temporal.NewSearchAttributeKeyKeyword("JobType")
	SearchDevice     = temporal.NewSearchAttributeKeyKeyword("Device") // the requested policy
	SearchPriority   = temporal.NewSearchAttributeKeyInt64("Priority")
	SearchTenant     = temporal.NewSearchAttributeKeyKeyword("Tenant")
	SearchWorkerType = temporal.NewSearchAttributeKeyKeyword("WorkerType")
)
