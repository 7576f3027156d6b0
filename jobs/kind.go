package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Params is one job kind's parameters: a pointer to a JSON-tagged struct whose zero fields the
// kind's Spec.New fills with defaults.
type Params interface {
	// Kind is the kind's registry name, e.g. "matrix_multiply".
	Kind() string
	// Validate checks every field before anything is allocated. Its error names the field and
	// what is allowed (a *ParamError).
	Validate() error
	// Work estimates what the job costs, for scheduling, timeouts and memory checks.
	Work() Work
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
	// GPUs is how many whole GPUs the job needs (a command job's resources.gpus); 0 for the
	// kinds that run on whichever device they are sent to.
	GPUs int `json:"gpus,omitempty"`
	// GPUMemBytes is the memory the job needs on each of those GPUs.
	GPUMemBytes int64 `json:"gpu_mem_bytes,omitempty"`
	// Timeout is the kind's own bound on an attempt (a command's timeout), for kinds whose cost
	// the estimates cannot tell; 0: derived from the estimate.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Progress is what a kernel reports once per iteration or epoch.
type Progress struct {
	Iteration int      `json:"iteration"`
	Total     int      `json:"total"`
	Loss      *float64 `json:"loss,omitempty"`
}

// Heartbeat is what a running Execute attempt records as its heartbeat: the kernel's progress,
// and who runs it, so that a job that fails or is lost with its worker still says where it ran.
type Heartbeat struct {
	Progress
	WorkerID   string `json:"worker_id,omitempty"`
	WorkerType string `json:"worker_type,omitempty"`
	Device     string `json:"device,omitempty"`
}

// Reporter receives progress. Kernels call it after each iteration or epoch and check their
// context right after, so a cancellation noticed by the reporter stops them within one step.
type Reporter func(Progress)

// Output is what one run of an implementation measured, and what ran it.
type Output struct {
	// SetupTime covers allocation and input generation, outside the timed region.
	SetupTime time.Duration
	// ProcessingTime covers the kernel itself (all iterations, after the warm-up).
	ProcessingTime time.Duration
	// TransferTime covers host↔device copies (GPU only).
	TransferTime time.Duration
	// Metrics are the job's numbers: gflops, gbps, final_loss, checksum, ...
	Metrics map[string]float64
	// BLAS is the CPU BLAS backend that ran (openblas or gonum), GEMM the GPU's SGEMM (cublas or
	// ptx), Threads the CPU threads it used, Precision the arithmetic when a kind offers several.
	BLAS      string
	GEMM      string
	Threads   int
	Precision string
	// Kernel names the kernel variant a GPU run launched (its tiling, its grid), and Modules how
	// the GPU's kernel modules were loaded (fatbin or ptx): for gpucheck and the logs.
	Kernel  string
	Modules string
	// Device is the device that ran the job, set by runners with several (one GPU of a node);
	// nil means the runner's own description.
	Device *DeviceInfo
	// Artifacts, ResumedFrom, ExitCode and GPUs: see the Result fields of the same names.
	Artifacts   []Artifact
	ResumedFrom string
	ExitCode    *int
	GPUs        []int
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

// DeviceInfo describes the hardware an implementation runs on.
type DeviceInfo struct {
	WorkerType        string // gpu or cpu
	Name              string // e.g. "AMD EPYC 9B14, 2 threads" or "NVIDIA H100 80GB HBM3"
	Index             int    // the GPU's ordinal on its node
	ComputeCapability string // GPU only, e.g. "9.0"
	Memory            int64  // bytes a job may use there
}

// Func is one device's implementation of a kind. It reports progress after each step and stops
// within one step once ctx is done.
type Func[P Params] func(ctx context.Context, p P, report Reporter) (Output, error)

// Metric names a result metric and its unit, e.g. {"gflops", "GFLOP/s"}.
type Metric struct{ Name, Unit string }

// Spec describes a job kind: its name, its params with their defaults, and its headline metric.
// Its implementations are registered apart from it, per device.
type Spec struct {
	Kind string
	// Summary is one line for help texts.
	Summary string
	// New returns params filled with the defaults.
	New func() Params
	// Headline is the metric that tables and the dashboard show as the job's rate.
	Headline Metric
	// Checkpoints says that the kind's implementations save checkpoints through the
	// RunInfo's Checkpointer, so the worker restores one for every attempt.
	Checkpoints bool
}

// Kinds maps kind names to their specs. It is read-only once built.
type Kinds struct {
	specs map[string]Spec
	names []string
}

// NewKinds builds a registry; a duplicate or incomplete spec is an error, so a mistake stops a
// process at start-up rather than at its first job.
func NewKinds(specs ...Spec) (*Kinds, error) {
	k := &Kinds{specs: make(map[string]Spec, len(specs))}
	for _, s := range specs {
		if err := k.add(s); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// With returns a registry of k's specs and more; k is unchanged.
func (k *Kinds) With(specs ...Spec) (*Kinds, error) {
	all := make([]Spec, 0, len(k.names)+len(specs))
	for _, n := range k.names {
		all = append(all, k.specs[n])
	}
	return NewKinds(append(all, specs...)...)
}

func (k *Kinds) add(s Spec) error {
	if err := ValidateKindName(s.Kind); err != nil {
		return fmt.Errorf("job kind spec: %w", err)
	}
	if s.New == nil {
		return fmt.Errorf("job kind %s: Spec.New is nil", s.Kind)
	}
	if _, dup := k.specs[s.Kind]; dup {
		return fmt.Errorf("job kind %s registered twice", s.Kind)
	}
	p := s.New()
	if p == nil || reflect.ValueOf(p).Kind() != reflect.Pointer {
		return fmt.Errorf("job kind %s: Spec.New must return a pointer to a params struct", s.Kind)
	}
	if got := p.Kind(); got != s.Kind {
		return fmt.Errorf("job kind %s: Spec.New makes params of kind %q", s.Kind, got)
	}
	k.specs[s.Kind] = s
	k.names = append(k.names, s.Kind)
	sort.Strings(k.names)
	return nil
}

// Names lists the registered kinds, sorted.
func (k *Kinds) Names() []string { return append([]string(nil), k.names...) }

// Spec returns the spec of kind, or an *UnknownKindError.
func (k *Kinds) Spec(kind string) (Spec, error) {
	s, ok := k.specs[kind]
	if !ok {
		return Spec{}, &UnknownKindError{Kind: kind, Known: k.Names()}
	}
	return s, nil
}

// UnknownKindError names the kind asked for and the ones that exist.
type UnknownKindError struct {
	Kind  string
	Known []string
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("unknown job type %q: known types are %s", e.Kind, strings.Join(e.Known, ", "))
}

// Decode turns a JSON params object into kind's params, defaults filled in, and validates them.
// Unknown fields are an error that lists the known ones; an empty or null object means the
// defaults; anything after the object is an error.
func (k *Kinds) Decode(kind string, raw []byte) (Params, error) {
	s, err := k.Spec(kind)
	if err != nil {
		return nil, err
	}
	p := s.New()
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && !bytes.Equal(trimmed, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p); err != nil {
			return nil, decodeError(kind, p, err)
		}
		if dec.More() || dec.InputOffset() < int64(len(trimmed)) {
			return nil, &ParamError{Kind: kind, Field: "params", Reason: "trailing data after the JSON object"}
		}
	}
	if d, ok := p.(interface{ ResolveDefaults() }); ok {
		d.ResolveDefaults()
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// decodeError rewrites encoding/json's errors so they name the field and what is allowed.
func decodeError(kind string, p Params, err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ParamError{Kind: kind, Field: field, Reason: "unknown field, known fields are " + strings.Join(Fields(p), ", ")}
	case errors.As(err, &te) && te.Field == "":
		return &ParamError{Kind: kind, Field: "params", Reason: "expected a JSON object, got JSON " + te.Value}
	case errors.As(err, &te):
		return &ParamError{Kind: kind, Field: te.Field, Reason: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value)}
	default:
		return &ParamError{Kind: kind, Field: "params", Reason: "not a JSON object: " + err.Error()}
	}
}

// Fields lists the JSON field names of a params struct, in declaration order.
func Fields(p Params) []string {
	t := reflect.TypeOf(p)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// ParamError says which field of which job kind is wrong and what is allowed.
type ParamError struct {
	Kind   string
	Field  string
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s: invalid %s: %s", e.Kind, e.Field, e.Reason)
}

// CheckRange is the common validation: lo <= v <= hi, with a message naming the range.
func CheckRange(kind, field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return &ParamError{Kind: kind, Field: field, Reason: fmt.Sprintf("%d is out of range, allowed %d..%d", v, lo, hi)}
	}
	return nil
}

// MaxJobMemBytes bounds one job's buffers, whatever the device: a worker's own limit (free memory
// on its GPU, its RAM budget) is checked again where it runs.
const MaxJobMemBytes = 16 << 30

// CheckMem rejects jobs whose buffers alone exceed MaxJobMemBytes, before anything is allocated.
func CheckMem(kind string, w Work) error {
	if w.MemBytes > MaxJobMemBytes {
		return &ParamError{Kind: kind, Field: "params", Reason: fmt.Sprintf(
			"needs %s of memory, more than the %s a job may use", FormatBytes(w.MemBytes), FormatBytes(MaxJobMemBytes))}
	}
	return nil
}

// Stopped returns the context's error, wrapped to say at which step a kernel stopped, or nil
// while the context is live.
func Stopped(ctx context.Context, kind string, step, total int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s stopped after step %d of %d: %w", kind, step, total, err)
	}
	return nil
}
