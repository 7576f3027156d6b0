package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/gpujobs/gpujobs/jobs"
)

// What a result may say. The monitor checks every result against these bounds before it stores
// it, and the aggregator checks again whatever it is given, so that no single message can
// poison the aggregates: with every time 0 or within MinSeconds..MaxSeconds and every rate at
// most MaxOtherRate, no sum, mean, percentile or ratio of them can overflow, and none is NaN.
// The bounds are wide enough for any real job. They are documented in the
// README (Monitor).
const (
	// MaxResultBytes bounds one result message (and one line of the store).
	MaxResultBytes = 1 << 20
	// MaxSeconds bounds processing_time, setup_time, transfer_time and queue_time: 30 days.
	MaxSeconds = 30 * 24 * 3600
	// MinSeconds is the shortest time other than 0: a nanosecond, the clocks' resolution. A
	// time of 1e-300 s would make a speedup overflow.
	MinSeconds = 1e-9
	// MaxEstimate bounds estimated_time, which nothing aggregates: the estimate of a job that
	// could never finish (a 32768² matrix product 100,000 times on a CPU: years) is still
	// reported with its failure.
	MaxEstimate = 1e12
	// MaxRate bounds a headline rate in GFLOP/s or GB/s: one exaflop/s, one exabyte/s, for one job.
	MaxRate = 1e9
	// MaxOtherRate bounds a headline rate in any other unit (samples/s, a user kind's own).
	MaxOtherRate = 1e15
	// MaxClockSkew is how far a result's times may lie in the future of the monitor's clock, and
	// how far out of order they may be, since the starter, the server and the workers each stamp
	// them with their own clock.
	MaxClockSkew = 5 * time.Minute
	// maxName bounds identifiers (job_id, worker_id, device, tenant, ...); Temporal's own limit
	// for a workflow ID is 1000 bytes.
	maxName = 1000
	// maxThreads and maxAttempt bound threads and attempt, which nothing sums but tables show.
	maxThreads = 1 << 20
	maxAttempt = 1 << 20
)

// EarliestTime is the earliest time a result may carry.
var EarliestTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// gigaUnits are the units whose rates MaxRate bounds.
var gigaUnits = []string{"GFLOP/s", "GB/s"}

// ErrMalformed marks a message that is not a result at all (not JSON, no job_id, job_type or
// status, too large); ErrRejected a result whose values are invalid. The consumer dead-letters
// both, with the reason.
var (
	ErrMalformed = errors.New("not a result")
	ErrRejected  = errors.New("invalid result")
)

// Validate checks a result against the closed sets of package jobs (status, worker_type,
// error_type, requested_device), the shape of its job_type (kinds are open: any well-formed
// name), the bounds above, and its times: each one present lies between EarliestTime and
// MaxClockSkew after now, and submit_time ≤ start_time ≤ end_time within MaxClockSkew. The error
// names the field, its value and what is allowed.
func Validate(r jobs.Result, now time.Time) error {
	if err := checkName("job_id", r.JobID, true); err != nil {
		return err
	}
	if err := jobs.ValidateKindName(r.JobType); err != nil {
		return err
	}
	if !slices.Contains(jobs.Statuses, r.Status) {
		return fmt.Errorf("status %q: want %s", r.Status, orList(jobs.Statuses))
	}
	if r.WorkerType != "" && !slices.Contains(jobs.WorkerTypes, r.WorkerType) {
		return fmt.Errorf("worker_type %q: want %s, or no worker_type for a job that reached no worker", r.WorkerType, orList(jobs.WorkerTypes))
	}
	if r.Status == jobs.StatusCompleted && r.WorkerType == "" {
		return fmt.Errorf("worker_type is missing: a completed job ran on a %s worker", orList(jobs.WorkerTypes))
	}
	if r.ErrorType != "" && !slices.Contains(jobs.ErrorTypes, r.ErrorType) {
		return fmt.Errorf("error_type %q: want %s", r.ErrorType, orList(jobs.ErrorTypes))
	}
	if r.Status == jobs.StatusCompleted && (r.ErrorType != "" || r.Error != "") {
		return fmt.Errorf("status completed with error_type %q and an error: a completed job has neither", r.ErrorType)
	}
	if r.RequestedDevice != "" && !slices.Contains(jobs.Devices, r.RequestedDevice) {
		return fmt.Errorf("requested_device %q: want %s", r.RequestedDevice, orList(jobs.Devices))
	}
	if err := jobs.ValidatePriority(r.Priority); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		value string
	}{
		{"worker_id", r.WorkerID}, {"device", r.Device}, {"tenant", r.Tenant}, {"rate_metric", r.RateMetric},
		{"rate_unit", r.RateUnit}, {"blas", r.BLAS}, {"gemm", r.GEMM}, {"compute_capability", r.ComputeCapability},
	} {
		if err := checkName(f.name, f.value, false); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name  string
		value string
	}{{"error", r.Error}, {"fallback", r.Fallback}, {"schedule_reason", r.ScheduleReason}} {
		if i := strings.IndexFunc(f.value, isBadTextRune); i >= 0 {
			return fmt.Errorf("%s has a control character (%q at byte %d): only newlines and tabs are allowed", f.name, f.value[i], i)
		}
	}
	for _, f := range []struct {
		name  string
		value float64
	}{
		{"processing_time", r.ProcessingTime}, {"setup_time", r.SetupTime}, {"transfer_time", r.TransferTime},
		{"queue_time", r.QueueTime},
	} {
		if !(f.value == 0 || f.value >= MinSeconds && f.value <= MaxSeconds) { // also false for NaN
			return fmt.Errorf("%s %v: want 0, or 1e-09 to %d seconds (1 ns to 30 days)", f.name, f.value, MaxSeconds)
		}
	}
	if !(r.EstimatedTime >= 0 && r.EstimatedTime <= MaxEstimate) {
		return fmt.Errorf("estimated_time %v: want 0 to %g seconds", r.EstimatedTime, float64(MaxEstimate))
	}
	for k, v := range r.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metrics.%s %v: want a finite number", k, v)
		}
	}
	if v, unit := r.Rate(); unit != "" {
		limit := float64(MaxOtherRate)
		if slices.Contains(gigaUnits, unit) {
			limit = MaxRate
		}
		if !(v >= 0 && v <= limit) {
			return fmt.Errorf("metrics: headline rate %v %s: want 0 to %g %s", v, unit, limit, unit)
		}
	}
	if r.Threads < 0 || r.Threads > maxThreads {
		return fmt.Errorf("threads %d: want 0 to %d", r.Threads, maxThreads)
	}
	if r.Attempt < 0 || r.Attempt > maxAttempt {
		return fmt.Errorf("attempt %d: want 0 to %d", r.Attempt, maxAttempt)
	}
	if r.DeviceMemory < 0 {
		return fmt.Errorf("device_memory %d: want a number of bytes, 0 or more", r.DeviceMemory)
	}
	if p := bytes.TrimSpace(r.Params); len(p) > 0 && p[0] != '{' && !bytes.Equal(p, []byte("null")) {
		return fmt.Errorf("params %.40s: want a JSON object", p)
	}
	if err := validateCommandFields(r); err != nil {
		return err
	}
	return validateTimes(r, now)
}

// latestPrediction bounds the scheduler's predictions (a huge job's end may lie far ahead).
var latestPrediction = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)

// validateCommandFields checks what command jobs and predictions add to a result.
func validateCommandFields(r jobs.Result) error {
	if len(r.Artifacts) > 10000 {
		return fmt.Errorf("%d artifacts: want at most 10000", len(r.Artifacts))
	}
	for _, a := range r.Artifacts {
		if err := checkName("artifact name", a.Name, true); err != nil {
			return err
		}
		if a.Size < 0 || len(a.SHA256) != 64 || strings.Trim(a.SHA256, "0123456789abcdef") != "" {
			return fmt.Errorf("artifact %q: want a size of 0 or more and a sha256 of 64 hex digits", a.Name)
		}
	}
	if r.ExitCode != nil && (*r.ExitCode < -1 || *r.ExitCode > 255) {
		return fmt.Errorf("exit_code %d: want -1..255", *r.ExitCode)
	}
	if len(r.GPUs) > 64 {
		return fmt.Errorf("%d gpus: want at most 64", len(r.GPUs))
	}
	for _, g := range r.GPUs {
		if g < 0 || g > 1023 {
			return fmt.Errorf("gpu %d: want a device ordinal 0..1023", g)
		}
	}
	if err := checkName("resumed_from", r.ResumedFrom, false); err != nil {
		return err
	}
	for _, p := range []struct {
		name string
		t    time.Time
	}{{"predicted_start", r.PredictedStart}, {"predicted_end", r.PredictedEnd}} {
		if !p.t.IsZero() && (p.t.Before(EarliestTime) || p.t.After(latestPrediction)) {
			return fmt.Errorf("%s %s: want a time between %s and %s", p.name, p.t.Format(time.RFC3339), EarliestTime.Format(time.RFC3339), latestPrediction.Format(time.RFC3339))
		}
	}
	if !r.PredictedStart.IsZero() && r.PredictedEnd.Before(r.PredictedStart) {
		return fmt.Errorf("predicted_end %s is before predicted_start %s", r.PredictedEnd.Format(time.RFC3339), r.PredictedStart.Format(time.RFC3339))
	}
	return nil
}

func validateTimes(r jobs.Result, now time.Time) error {
	latest := now.Add(MaxClockSkew)
	times := []struct {
		name string
		t    time.Time
	}{{"submit_time", r.SubmitTime}, {"start_time", r.StartTime}, {"end_time", r.EndTime}}
	for _, x := range times {
		if x.t.IsZero() {
			continue
		}
		if x.t.Before(EarliestTime) {
			return fmt.Errorf("%s %s: want a time after %s", x.name, x.t.Format(time.RFC3339Nano), EarliestTime.Format(time.RFC3339))
		}
		if x.t.After(latest) {
			return fmt.Errorf("%s %s is in the future: the monitor's clock says %s, and allows %s of clock skew",
				x.name, x.t.Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339), MaxClockSkew)
		}
	}
	for i, a := range times {
		for _, b := range times[i+1:] {
			if !a.t.IsZero() && !b.t.IsZero() && b.t.Add(MaxClockSkew).Before(a.t) {
				return fmt.Errorf("%s %s is before %s %s (more than %s of clock skew)",
					b.name, b.t.Format(time.RFC3339Nano), a.name, a.t.Format(time.RFC3339Nano), MaxClockSkew)
			}
		}
	}
	return nil
}

// checkName accepts "" (unless required) and up to maxName bytes without control characters.
func checkName(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%s is missing", field)
	case len(v) > maxName:
		return fmt.Errorf("%s of %d bytes: want at most %d", field, len(v), maxName)
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%s %q has a control character at byte %d", field, v, i)
	}
	return nil
}

func isBadTextRune(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }

func orList(v []string) string {
	switch len(v) {
	case 0:
		return "nothing"
	case 1:
		return v[0]
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}
