// Package kernels holds the job types that gpujobs runs: for each one a params struct with the
// seed's defaults, its validation, an estimate of its work and its CPU implementation.
//
// Kernels are pure computation. They must not import Temporal, RabbitMQ or anything that talks to
// the network: the activities package adapts them to Temporal (heartbeats, cancellation, errors),
// and the GPU implementations live in kernels/cuda behind the cuda build tag.
package kernels

import (
	"context"
	"fmt"
	"time"
)

// Params is one job type's parameters. Implementations are pointers to JSON-tagged structs.
type Params interface {
	// Kind is the job type's registry name, e.g. "matrix_multiply".
	Kind() string
	// Validate checks every field before anything is allocated. Its error is a *ParamError.
	Validate() error
	// Work estimates what the job costs, for scheduling, timeouts and memory checks.
	Work() Work
	// RunCPU runs the job on the CPU, reporting progress after each iteration or epoch and
	// stopping within one step once ctx is done.
	RunCPU(ctx context.Context, report Reporter) (Output, error)
}

// Work is an estimate of what one job costs. Rates (GFLOP/s, GB/s) are computed from it too, so
// the estimate and the reported rate always agree.
type Work struct {
	// FLOPs is the number of floating-point operations of the timed part of the job.
	FLOPs float64 `json:"flops"`
	// Bytes is the memory traffic of the timed part (reads + writes), for bandwidth-bound kernels.
	Bytes float64 `json:"bytes"`
	// MemBytes is the peak memory the job's buffers need on the device that runs it.
	MemBytes int64 `json:"mem_bytes"`
	// TransferBytes is what a GPU run copies between host and device.
	TransferBytes int64 `json:"transfer_bytes"`
	// Steps is the number of progress steps (iterations or epochs) the job reports.
	Steps int `json:"steps"`
}

// Progress is what a kernel reports once per iteration or epoch.
type Progress struct {
	Iteration int      `json:"iteration"`
	Total     int      `json:"total"`
	Loss      *float64 `json:"loss,omitempty"`
}

// Reporter receives progress. Kernels call it after each iteration or epoch and check their
// context right after, so a cancellation noticed by the reporter stops them within one step.
type Reporter func(Progress)

// Output is what one run of a kernel measured.
type Output struct {
	// SetupTime covers allocation and input generation, outside the timed region.
	SetupTime time.Duration
	// ProcessingTime covers the kernel itself (all iterations, after the warm-up).
	ProcessingTime time.Duration
	// TransferTime covers host↔device copies (GPU only).
	TransferTime time.Duration
	// Metrics are the job's numbers: gflops, gbps, final_loss, checksum, ...
	Metrics map[string]float64
	// Info names what ran: blas backend, gemm implementation, threads.
	Info map[string]string
	// Telemetry is what the GPU's management library saw while the job ran; nil when it was
	// not sampled (a CPU job, or a node without NVML).
	Telemetry *Telemetry
}

// Telemetry is a GPU's utilisation and memory while a job ran. The figures are the device's:
// when jobs share a GPU, each one's include the others'.
type Telemetry struct {
	Samples         int
	UtilizationMean float64 // percent of the time a kernel was running
	UtilizationPeak float64
	MemoryPeak      int64 // bytes in use on the device
}

// ParamError says which field of which job type is wrong and what is allowed.
type ParamError struct {
	Kind   string
	Field  string
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s: invalid %s: %s", e.Kind, e.Field, e.Reason)
}

// checkRange is the common validation: lo <= v <= hi, with a message naming the range.
func checkRange(kind, field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return &ParamError{Kind: kind, Field: field, Reason: fmt.Sprintf("%d is out of range, allowed %d..%d", v, lo, hi)}
	}
	return nil
}

// checkMem rejects jobs whose buffers alone exceed MaxJobMemBytes, before anything is allocated.
func checkMem(kind string, w Work) error {
	if w.MemBytes > MaxJobMemBytes {
		return &ParamError{Kind: kind, Field: "params", Reason: fmt.Sprintf(
			"needs %s of memory, more than the %s a job may use", FormatBytes(w.MemBytes), FormatBytes(MaxJobMemBytes))}
	}
	return nil
}

// MaxJobMemBytes bounds one job's buffers, whatever the device: a worker's own limit (free memory
// on its GPU, its RAM budget) is checked again where it runs.
const MaxJobMemBytes = 16 << 30

// FormatBytes writes n in binary units, e.g. "3.0 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stopped returns the context's error, wrapped so the caller knows at which step it stopped.
func stopped(ctx context.Context, kind string, step, total int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s stopped after step %d of %d: %w", kind, step, total, err)
	}
	return nil
}

// Rate computes units per second, or 0 when no time was measured.
func Rate(units float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return units / d.Seconds()
}
