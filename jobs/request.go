package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Task queues.
const (
	// JobQueue is where the scheduler worker runs JobWorkflow and its local activities.
	JobQueue = "job_queue"
	// GPUQueue is polled by GPU workers.
	GPUQueue = "gpu_queue"
	// CPUQueue is polled by CPU workers.
	CPUQueue = "cpu_queue"
)

// Device policies a job can ask for.
const (
	DeviceGPU        = "gpu"  // prefer a GPU, fall back to CPU (labelled) when none is available or it is swamped
	DeviceRequireGPU = "gpu!" // only a GPU; wait for one, fail clearly when none comes
	DeviceCPU        = "cpu"  // CPU only
	DeviceAuto       = "auto" // whichever is expected to finish first
	DefaultDevice    = DeviceAuto
)

// Devices lists the device policies, for help texts and errors.
var Devices = []string{DeviceGPU, DeviceRequireGPU, DeviceCPU, DeviceAuto}

// Priorities map onto Temporal's task-queue priority keys: 1 is dispatched first.
const (
	MinPriority     = 1
	MaxPriority     = 5
	DefaultPriority = 3
)

// MaxTenantLen bounds a tenant name.
const MaxTenantLen = 64

const (
	jobIDPrefix = "job-"
	jobIDHexLen = 12
)

// Request is a job as submitted: the JobWorkflow's input.
type Request struct {
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
	// SubmitTime is when the job was submitted.
	SubmitTime time.Time `json:"submit_time"`
	// SweepID names the sweep the job is a point of (see SweepRequest); empty for other jobs.
	SweepID string `json:"sweep_id,omitempty"`
}

// Validate checks the request's own fields; the params are checked against the kind's registry
// where the job is scheduled.
func (r Request) Validate() error {
	if err := ValidateJobID(r.JobID); err != nil {
		return err
	}
	if err := ValidateKindName(r.JobType); err != nil {
		return err
	}
	if err := ValidateDevice(r.Device); err != nil {
		return err
	}
	if err := ValidatePriority(r.Priority); err != nil {
		return err
	}
	if len(r.Tenant) > MaxTenantLen {
		return fmt.Errorf("invalid tenant: %d characters, allowed 1..%d", len(r.Tenant), MaxTenantLen)
	}
	if r.Timeout < 0 {
		return fmt.Errorf("invalid timeout: %s, must be positive", r.Timeout)
	}
	if r.SweepID != "" {
		return ValidateSweepID(r.SweepID)
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

// ValidatePriority accepts 1..5 and 0 (the default).
func ValidatePriority(p int) error {
	if p != 0 && (p < MinPriority || p > MaxPriority) {
		return fmt.Errorf("invalid priority: %d is out of range, allowed %d..%d", p, MinPriority, MaxPriority)
	}
	return nil
}

// MaxJobIDLen bounds a job ID (Temporal's limit on workflow IDs is larger).
const MaxJobIDLen = 200

// ValidateJobID checks that id can be a job's workflow ID: 1..200 bytes of printable UTF-8
// without spaces. NewJobID makes job-<12 hex> IDs; other clients (the RabbitMQ bridge, Temporal's
// own tools) may bring theirs.
func ValidateJobID(id string) error {
	switch {
	case id == "":
		return errors.New("invalid job_id: empty")
	case len(id) > MaxJobIDLen:
		return fmt.Errorf("invalid job_id: %d bytes, allowed 1..%d", len(id), MaxJobIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("invalid job_id %q: not UTF-8", id)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("invalid job_id %q: spaces and control characters are not allowed", id)
		}
	}
	return nil
}

// NewJobID returns a fresh job-<12 hex> ID.
func NewJobID() string {
	var b [jobIDHexLen / 2]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand never fails on Linux
	return jobIDPrefix + hex.EncodeToString(b[:])
}

var kindName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// ValidateKindName checks the shape of a job type's name: lowercase letters, digits and
// underscores, starting with a letter, at most 64 characters. Whether the kind exists is for
// the registry of the process that runs it to say.
func ValidateKindName(kind string) error {
	if kind == "" {
		return fmt.Errorf("job_type is empty")
	}
	if !kindName.MatchString(kind) {
		return fmt.Errorf("invalid job_type %q: lowercase letters, digits and _, starting with a letter, at most 64 characters", kind)
	}
	return nil
}

// EffectiveDevice returns the request's device policy with the default applied.
func (r Request) EffectiveDevice() string {
	if r.Device == "" {
		return DefaultDevice
	}
	return r.Device
}

// EffectivePriority returns the request's priority with the default applied.
func (r Request) EffectivePriority() int {
	if r.Priority == 0 {
		return DefaultPriority
	}
	return r.Priority
}
