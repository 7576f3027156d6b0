package jobs

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Job statuses in results.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
)

// Statuses lists the statuses a result can have.
var Statuses = []string{StatusCompleted, StatusFailed, StatusCanceled}

// Worker types: the kind of hardware that really ran a job.
const (
	WorkerTypeGPU = "gpu"
	WorkerTypeCPU = "cpu"
)

// WorkerTypes lists the worker types a result can name ("" for a job that reached no worker).
var WorkerTypes = []string{WorkerTypeGPU, WorkerTypeCPU}

// Error types of the application errors that jobs fail with.
const (
	// ErrInvalidParams: the job's params (or its request) are wrong. Never retried.
	ErrInvalidParams = "InvalidParams"
	// ErrResourceExhausted: the job can never fit the worker's memory. Never retried.
	ErrResourceExhausted = "ResourceExhausted"
	// ErrKernelPanic: the kernel crashed; the worker survived. Never retried: it would crash again.
	ErrKernelPanic = "KernelPanic"
	// ErrKernel: the kernel failed (e.g. a CUDA error). Retried.
	ErrKernel = "KernelError"
	// ErrNoImplementation: the worker that took the job has no implementation of its kind for
	// its device. Never retried on that device.
	ErrNoImplementation = "NoImplementation"
	// ErrResourceBusy: the job does not fit the memory available now but may later. The workflow
	// waits and offers it again (to any worker), as often as it takes; a job never ends with it.
	ErrResourceBusy = "ResourceBusy"
	// ErrKernelStalled: the kernel made no progress for far longer than its estimate. Retried.
	ErrKernelStalled = "KernelStalled"
	// ErrCommandNotAllowed: a command job reached a worker that does not run commands, or not
	// that program. Never retried.
	ErrCommandNotAllowed = "CommandNotAllowed"
	// ErrCommandFailed: a command job's program exited with a non-zero status (or was killed).
	// Not retried: it would most likely fail the same way.
	ErrCommandFailed = "CommandFailed"
	// ErrOutOfMemory: a command job exceeded its memory limit. Never retried.
	ErrOutOfMemory = "OutOfMemory"
	// ErrNoWorker: no worker of the required kind took the job in time.
	ErrNoWorker = "NoWorker"
	// ErrTimeout: the job ran past its timeout.
	ErrTimeout = "Timeout"
	// ErrCanceled: the job was canceled.
	ErrCanceled = "Canceled"
	// ErrTerminated: the job's workflow was terminated from outside.
	ErrTerminated = "Terminated"
)

// ErrorTypes lists the error types a result can carry.
var ErrorTypes = []string{ErrInvalidParams, ErrResourceExhausted, ErrKernelPanic, ErrKernel, ErrNoImplementation,
	ErrKernelStalled, ErrCommandNotAllowed, ErrCommandFailed, ErrOutOfMemory, ErrNoWorker, ErrTimeout, ErrCanceled, ErrTerminated}

// ErrBusy marks an error of a runner that cannot take a job now for lack of memory (or GPU
// slots) it may have later: the worker reports it as ErrResourceBusy.
var ErrBusy = errors.New("busy")

// ErrTooBig marks an error of a runner for a job that can never fit its device or the worker's
// memory limit: the worker reports it as ErrResourceExhausted.
var ErrTooBig = errors.New("too big for this worker")

// Result is what a job's workflow returns and publishes to result_queue. Field names are the
// seed system's, plus what gpujobs adds; they are the monitor's input and documented in the
// README.
type Result struct {
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
	// Metrics are the job kind's numbers: gflops, gbps, final_loss, samples_per_sec, checksum, ...
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// RateMetric and RateUnit name the kind's headline metric (one of Metrics) and its unit, so
	// tables and dashboards that were not built with the kind can show it.
	RateMetric string `json:"rate_metric,omitempty"`
	RateUnit   string `json:"rate_unit,omitempty"`
	// Fallback is set when a GPU-preferring job ran on a CPU, and says why.
	Fallback string `json:"fallback,omitempty"`
	// BLAS names the CPU BLAS backend (openblas or gonum); GEMM the GPU GEMM (cublas or ptx).
	BLAS    string `json:"blas,omitempty"`
	GEMM    string `json:"gemm,omitempty"`
	Threads int    `json:"threads,omitempty"`
	// RequestedDevice is the policy the job asked for: auto, gpu, gpu! or cpu.
	RequestedDevice string `json:"requested_device,omitempty"`
	Priority        int    `json:"priority,omitempty"`
	Tenant          string `json:"tenant,omitempty"`
	// SweepID names the sweep the job was a point of, so a sweep's results can be grouped.
	SweepID        string  `json:"sweep_id,omitempty"`
	EstimatedTime  float64 `json:"estimated_time,omitempty"`
	ScheduleReason string  `json:"schedule_reason,omitempty"`
	Attempt        int     `json:"attempt,omitempty"`
	// GPU details, when a GPU ran the job.
	ComputeCapability string `json:"compute_capability,omitempty"`
	DeviceMemory      int64  `json:"device_memory,omitempty"`
	// GPU telemetry from NVML while the job ran, when the worker has NVML: the mean and peak
	// SM utilisation (percent of time a kernel ran) and the peak memory in use, bytes. They are
	// the device's figures: with jobs sharing the GPU, the others' work is in them too.
	GPUUtilizationMean *float64 `json:"gpu_utilization_mean,omitempty"`
	GPUUtilizationPeak *float64 `json:"gpu_utilization_peak,omitempty"`
	GPUMemoryPeak      int64    `json:"gpu_memory_peak,omitempty"`
	// Artifacts are the files the job left in the artifact store (a command job's outputs).
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// ResumedFrom says which checkpoint the job resumed from, when it did.
	ResumedFrom string `json:"resumed_from,omitempty"`
	// ExitCode is a command job's exit status.
	ExitCode *int `json:"exit_code,omitempty"`
	// GPUs are the device ordinals a GPU command job was given (its CUDA_VISIBLE_DEVICES).
	GPUs []int `json:"gpus,omitempty"`
	// PredictedStart and PredictedEnd are what the scheduler predicted when it placed the job:
	// when a worker would start it, and when it would end.
	PredictedStart time.Time `json:"predicted_start,omitzero"`
	PredictedEnd   time.Time `json:"predicted_end,omitzero"`
}

// legacyRates are the headline metrics of results that do not name theirs, in order of
// preference: what the built-in kinds report.
var legacyRates = []Metric{{"gbps", "GB/s"}, {"gflops", "GFLOP/s"}, {"samples_per_sec", "samples/s"}}

// Rate returns the job's headline rate and its unit: the metric the result names, else GB/s,
// GFLOP/s or samples/s, whichever it reports first; unit is "" when there is none.
func (r Result) Rate() (float64, string) {
	if r.RateMetric != "" {
		if v, ok := r.Metrics[r.RateMetric]; ok {
			return v, cmp.Or(r.RateUnit, r.RateMetric)
		}
		return 0, ""
	}
	for _, m := range legacyRates {
		if v, ok := r.Metrics[m.Name]; ok {
			return v, m.Unit
		}
	}
	return 0, ""
}

// Failure is an error an implementation returns to fail its job with a given error type (one of
// ErrorTypes, or a kind's own, reported as KernelError), retried or not.
type Failure struct {
	Type      string
	Message   string
	Retryable bool
}

func (f *Failure) Error() string { return f.Message }

// Fail returns a *Failure.
func Fail(errType string, retryable bool, format string, args ...any) error {
	return &Failure{Type: errType, Retryable: retryable, Message: fmt.Sprintf(format, args...)}
}
