package bridge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// Aliases are the job-type spellings of the original system's clients that mean a gpujobs kind.
var Aliases = map[string]string{"vector_add": "vector_addition"}

// Reasons a message is dead-lettered: the x-gpujobs-reason header's first word and the metric's
// label.
const (
	ReasonNotJSON        = "not_json"         // the body is not one JSON object
	ReasonNoJobType      = "no_job_type"      // job_type is missing or not a string
	ReasonUnknownJobType = "unknown_job_type" // no kind of that name
	ReasonInvalidField   = "invalid_field"    // job_id, submit_time, prefer_gpu, ... has the wrong type or value
	ReasonInvalidParams  = "invalid_params"   // the kind rejects the params
	ReasonRefused        = "refused"          // Temporal refused the start as invalid (e.g. too large)
)

// Reasons lists the reasons, for metrics.
var Reasons = []string{ReasonNotJSON, ReasonNoJobType, ReasonUnknownJobType, ReasonInvalidField, ReasonInvalidParams, ReasonRefused}

// InvalidError is why a message cannot become a job: it is dead-lettered, never retried.
type InvalidError struct {
	Reason string // one of the Reason* constants
	Err    error
}

func (e *InvalidError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

func invalid(reason string, format string, args ...any) error {
	return &InvalidError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Message is one delivery's content and the properties the bridge reads.
type Message struct {
	Body      []byte
	MessageID string
	Timestamp time.Time // the AMQP timestamp property; zero when unset
}

// Parsed is a message turned into a job request, and where its job ID came from.
type Parsed struct {
	Request jobs.Request
	// IDSource is job_id, message_id or body (a hash of it).
	IDSource string
	// OriginalID is the job_id or message_id as sent, when it was not a valid job ID and the job
	// ID is a hash of it.
	OriginalID string
}

// envelope keys: everything else at the top level of a message is a param of the job.
const (
	keyJobType    = "job_type"
	keyJobID      = "job_id"
	keyPreferGPU  = "prefer_gpu"
	keySubmitTime = "submit_time"
	keyParams     = "params" // optional nested params object, merged under the top-level ones
	keyDevice     = "device" // gpujobs extensions: auto, gpu, gpu! or cpu (overrides prefer_gpu)
	keyPriority   = "priority"
	keyTenant     = "tenant"
)

// Parse turns a message in the original system's format into a job request: a JSON object with
// job_type, the job's params at the top level (or in a nested "params" object), prefer_gpu, and
// optionally job_id and submit_time (RFC 3339, or ISO 8601 without a zone, read in loc, or Unix
// seconds). The job ID is the message's job_id, else its AMQP message_id, else a hash of the body
// (see DeriveID), so the same message always maps to the same job. The params are validated
// against known. An error is an *InvalidError.
func Parse(m Message, known *jobs.Kinds, loc *time.Location, now time.Time) (Parsed, error) {
	var p Parsed
	fields := map[string]json.RawMessage{}
	if trimmed := bytes.TrimSpace(m.Body); len(trimmed) > 0 && trimmed[0] != '{' && !bytes.Equal(trimmed, []byte("null")) {
		return p, invalid(ReasonNotJSON, "body is not a JSON object: it starts with %q", shorten(trimmed, 20))
	}
	dec := json.NewDecoder(bytes.NewReader(m.Body))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		return p, invalid(ReasonNotJSON, "body is not a JSON object: %v", err)
	}
	if dec.More() {
		return p, invalid(ReasonNotJSON, "body has data after its JSON object")
	}
	if fields == nil {
		return p, invalid(ReasonNotJSON, "body is JSON null, not an object")
	}
	take := func(k string) (json.RawMessage, bool) {
		v, ok := fields[k]
		delete(fields, k)
		return v, ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
	}

	var spec jobclient.Spec
	jobID, err := stringField(take, keyJobID, true)
	if err != nil {
		return p, err
	}
	spec.JobID, p.IDSource, p.OriginalID = DeriveID(jobID, m.MessageID, m.Body)
	p.Request.JobID = spec.JobID // known even when the rest is invalid, for the dead letter's headers
	raw, ok := take(keyJobType)
	if !ok || json.Unmarshal(raw, &spec.JobType) != nil || spec.JobType == "" {
		return p, invalid(ReasonNoJobType, "job_type missing or not a string: known types are %s", strings.Join(known.Names(), ", "))
	}
	if alias, ok := Aliases[spec.JobType]; ok {
		spec.JobType = alias
	}
	if _, err := known.Spec(spec.JobType); err != nil {
		return p, &InvalidError{Reason: ReasonUnknownJobType, Err: err}
	}

	if raw, ok := take(keyPreferGPU); ok {
		var prefer bool
		if json.Unmarshal(raw, &prefer) != nil {
			return p, invalid(ReasonInvalidField, "invalid prefer_gpu %s: want true or false", raw)
		}
		spec.Device = map[bool]string{true: jobs.DeviceGPU, false: jobs.DeviceCPU}[prefer]
	}
	if d, err := stringField(take, keyDevice, false); err != nil {
		return p, err
	} else if d != "" {
		spec.Device = d
	}
	if spec.Tenant, err = stringField(take, keyTenant, false); err != nil {
		return p, err
	}
	if raw, ok := take(keyPriority); ok && json.Unmarshal(raw, &spec.Priority) != nil {
		return p, invalid(ReasonInvalidField, "invalid priority %s: want an integer 1..5", raw)
	}
	submit := m.Timestamp
	if raw, ok := take(keySubmitTime); ok {
		if submit, err = parseTime(raw, loc); err != nil {
			return p, err
		}
	}
	if submit.IsZero() {
		submit = now
	}

	params := map[string]json.RawMessage{}
	if raw, ok := take(keyParams); ok {
		if json.Unmarshal(raw, &params) != nil || params == nil {
			return p, invalid(ReasonInvalidField, "invalid params %s: want a JSON object", raw)
		}
	}
	for k, v := range fields {
		params[k] = v // top-level params win over nested ones
	}
	body, err := json.Marshal(params)
	if err != nil {
		return p, invalid(ReasonInvalidParams, "params: %v", err)
	}
	spec.Params = string(body)
	req, err := jobclient.Build(spec, known)
	if err != nil {
		var pe *jobs.ParamError
		if errors.As(err, &pe) {
			return p, &InvalidError{Reason: ReasonInvalidParams, Err: err}
		}
		return p, &InvalidError{Reason: ReasonInvalidField, Err: err}
	}
	req.SubmitTime = submit.UTC()
	p.Request = req
	return p, nil
}

// stringField takes a string field; numbers are accepted where allowNumber (job IDs such as 17).
func stringField(take func(string) (json.RawMessage, bool), key string, allowNumber bool) (string, error) {
	raw, ok := take(key)
	if !ok {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	if allowNumber && json.Unmarshal(raw, &n) == nil {
		return n.String(), nil
	}
	return "", invalid(ReasonInvalidField, "invalid %s %s: want a string", key, raw)
}

// naiveLayouts are ISO 8601 times without a zone, as Python's datetime.isoformat() writes them.
var naiveLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"}

// parseTime reads a submit_time: RFC 3339 (with a zone), ISO 8601 without a zone (read in loc),
// or Unix seconds.
func parseTime(raw json.RawMessage, loc *time.Location) (time.Time, error) {
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		f, err := n.Float64()
		if err != nil || f < 0 || f > math.MaxInt32*4 {
			return time.Time{}, invalid(ReasonInvalidField, "invalid submit_time %s: not a Unix time in seconds", raw)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return time.Time{}, invalid(ReasonInvalidField, "invalid submit_time %s: want an ISO 8601 time or Unix seconds", raw)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range naiveLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, invalid(ReasonInvalidField, "invalid submit_time %q: want ISO 8601 (2024-05-01T12:30:00.123456, with or without a zone) or Unix seconds", s)
}

// DeriveID returns the job ID of a message: its job_id, else its message_id, else a hash of its
// body, and which it was. A job_id or message_id that is not a valid job ID (too long, spaces or
// control characters) is mapped to job-<12 hex of its SHA-256>, and returned as original, so the
// same message always maps to the same job.
func DeriveID(jobID, messageID string, body []byte) (id, source, original string) {
	for _, c := range []struct{ v, source string }{{jobID, "job_id"}, {messageID, "message_id"}} {
		if c.v == "" {
			continue
		}
		if jobs.ValidateJobID(c.v) == nil {
			return c.v, c.source, ""
		}
		return hashID([]byte(c.v)), c.source, c.v
	}
	return hashID(body), "body", ""
}

func hashID(b []byte) string {
	sum := sha256.Sum256(b)
	return "job-" + hex.EncodeToString(sum[:6])
}

func shorten(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
