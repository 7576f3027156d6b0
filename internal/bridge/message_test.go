package bridge

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

var (
	madrid = time.FixedZone("CEST", 2*3600)
	now    = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
)

func parse(t *testing.T, body string, messageID string) (Parsed, error) {
	t.Helper()
	return Parse(Message{Body: []byte(body), MessageID: messageID}, builtin.Kinds(), madrid, now)
}

func params(t *testing.T, p Parsed) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(p.Request.Params, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseSeedMessage(t *testing.T) {
	// What the original client publishes: the params at the top level, a naive ISO time.
	p, err := parse(t, `{"job_id": "3f2a9c1b-7e04-4c2e-9d1f-0a1b2c3d4e5f", "job_type": "matrix_multiply", "size": 128,
		"iterations": 2, "prefer_gpu": true, "submit_time": "2026-03-01T11:59:58.250000"}`, "ignored-when-job_id")
	if err != nil {
		t.Fatal(err)
	}
	r := p.Request
	if r.JobID != "3f2a9c1b-7e04-4c2e-9d1f-0a1b2c3d4e5f" || p.IDSource != "job_id" || p.OriginalID != "" {
		t.Errorf("job ID %q from %s (original %q)", r.JobID, p.IDSource, p.OriginalID)
	}
	if r.JobType != "matrix_multiply" || r.Device != jobs.DeviceGPU {
		t.Errorf("type %q device %q", r.JobType, r.Device)
	}
	if m := params(t, p); m["size"] != 128.0 || m["iterations"] != 2.0 || m["precision"] != "fp32" {
		t.Errorf("params %v: want size 128, iterations 2 and the defaults", m)
	}
	want := time.Date(2026, 3, 1, 9, 59, 58, 250e6, time.UTC) // 11:59:58.25 in UTC+2
	if !r.SubmitTime.Equal(want) || r.SubmitTime.Location() != time.UTC {
		t.Errorf("submit time %v, want %v", r.SubmitTime, want)
	}
	if err := r.Validate(); err != nil {
		t.Error(err)
	}
}

func TestParseVariants(t *testing.T) {
	for _, tc := range []struct {
		name, body, messageID string
		check                 func(t *testing.T, p Parsed)
	}{
		{"vector_add is vector_addition, prefer_gpu false is cpu", `{"job_type": "vector_add", "size": 1000, "prefer_gpu": false}`, "m-1",
			func(t *testing.T, p Parsed) {
				if p.Request.JobType != "vector_addition" || p.Request.Device != jobs.DeviceCPU {
					t.Errorf("type %q device %q", p.Request.JobType, p.Request.Device)
				}
			}},
		{"message_id when there is no job_id", `{"job_type": "vector_addition"}`, "msg-42",
			func(t *testing.T, p Parsed) {
				if p.Request.JobID != "msg-42" || p.IDSource != "message_id" || p.Request.Device != "" {
					t.Errorf("job ID %q from %s device %q", p.Request.JobID, p.IDSource, p.Request.Device)
				}
			}},
		{"a numeric job_id", `{"job_type": "vector_addition", "job_id": 17}`, "",
			func(t *testing.T, p Parsed) {
				if p.Request.JobID != "17" {
					t.Errorf("job ID %q", p.Request.JobID)
				}
			}},
		{"a job_id with spaces is hashed, the original kept", `{"job_type": "vector_addition", "job_id": "my job 1"}`, "",
			func(t *testing.T, p Parsed) {
				if p.Request.JobID != hashID([]byte("my job 1")) || p.OriginalID != "my job 1" || jobs.ValidateJobID(p.Request.JobID) != nil {
					t.Errorf("job ID %q original %q", p.Request.JobID, p.OriginalID)
				}
			}},
		{"nested params, top level wins", `{"job_type": "matrix_multiply", "params": {"size": 64, "iterations": 3}, "size": 32}`, "",
			func(t *testing.T, p Parsed) {
				if m := params(t, p); m["size"] != 32.0 || m["iterations"] != 3.0 {
					t.Errorf("params %v", m)
				}
			}},
		{"gpujobs extensions", `{"job_type": "vector_addition", "device": "gpu!", "prefer_gpu": false, "priority": 1, "tenant": "team-a"}`, "",
			func(t *testing.T, p Parsed) {
				r := p.Request
				if r.Device != jobs.DeviceRequireGPU || r.Priority != 1 || r.Tenant != "team-a" {
					t.Errorf("device %q priority %d tenant %q", r.Device, r.Priority, r.Tenant)
				}
			}},
		{"submit_time with a zone", `{"job_type": "vector_addition", "submit_time": "2026-03-01T09:00:00+00:00"}`, "",
			func(t *testing.T, p Parsed) {
				if !p.Request.SubmitTime.Equal(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) {
					t.Errorf("submit time %v", p.Request.SubmitTime)
				}
			}},
		{"submit_time in Unix seconds", `{"job_type": "vector_addition", "submit_time": 1772355600.5}`, "",
			func(t *testing.T, p Parsed) {
				if !p.Request.SubmitTime.Equal(time.Unix(1772355600, 5e8)) {
					t.Errorf("submit time %v", p.Request.SubmitTime)
				}
			}},
		{"no submit_time: now", `{"job_type": "vector_addition"}`, "",
			func(t *testing.T, p Parsed) {
				if !p.Request.SubmitTime.Equal(now) {
					t.Errorf("submit time %v, want %v", p.Request.SubmitTime, now)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(t, tc.body, tc.messageID)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestHashedIDsAreStable(t *testing.T) {
	a, _ := parse(t, `{"job_type": "vector_addition", "seed": 1}`, "")
	b, _ := parse(t, `{"job_type": "vector_addition", "seed": 1}`, "")
	c, _ := parse(t, `{"job_type": "vector_addition", "seed": 2}`, "")
	if a.Request.JobID != b.Request.JobID || a.IDSource != "body" {
		t.Errorf("same body, IDs %q and %q (from %s): a redelivery must map to the same job", a.Request.JobID, b.Request.JobID, a.IDSource)
	}
	if a.Request.JobID == c.Request.JobID {
		t.Errorf("different bodies, same ID %q", a.Request.JobID)
	}
	if err := jobs.ValidateJobID(a.Request.JobID); err != nil || !strings.HasPrefix(a.Request.JobID, "job-") || len(a.Request.JobID) != 16 {
		t.Errorf("hashed ID %q: want job-<12 hex>: %v", a.Request.JobID, err)
	}
}

func TestParseRejectsWithReason(t *testing.T) {
	for _, tc := range []struct{ body, reason, msg string }{
		{`not json`, ReasonNotJSON, "body is not a JSON object"},
		{``, ReasonNotJSON, "body is not a JSON object"},
		{`[1, 2]`, ReasonNotJSON, "body is not a JSON object"},
		{`null`, ReasonNotJSON, "JSON null"},
		{`{"job_type": "vector_addition"} {}`, ReasonNotJSON, "data after its JSON object"},
		{`{"size": 10}`, ReasonNoJobType, "job_type missing or not a string: known types are command, image_processing, matrix_multiply, neural_network, vector_addition"},
		{`{"job_type": 3}`, ReasonNoJobType, "job_type missing"},
		{`{"job_type": "sorting"}`, ReasonUnknownJobType, `unknown job type "sorting": known types are command, image_processing, matrix_multiply, neural_network, vector_addition`},
		{`{"job_type": "matrix_multiply", "size": -1}`, ReasonInvalidParams, "invalid size: -1 is out of range, allowed 1..32768"},
		{`{"job_type": "matrix_multiply", "epochs": 3}`, ReasonInvalidParams, "invalid epochs: unknown field, known fields are size, iterations, precision, seed"},
		{`{"job_type": "matrix_multiply", "size": "big"}`, ReasonInvalidParams, "size"},
		{`{"job_type": "vector_addition", "prefer_gpu": "yes"}`, ReasonInvalidField, `invalid prefer_gpu "yes": want true or false`},
		{`{"job_type": "vector_addition", "submit_time": "yesterday"}`, ReasonInvalidField, `invalid submit_time "yesterday"`},
		{`{"job_type": "vector_addition", "submit_time": true}`, ReasonInvalidField, "invalid submit_time true"},
		{`{"job_type": "vector_addition", "job_id": {"a": 1}}`, ReasonInvalidField, "invalid job_id"},
		{`{"job_type": "vector_addition", "device": "tpu"}`, ReasonInvalidField, `invalid device "tpu": allowed gpu, gpu!, cpu, auto`},
		{`{"job_type": "vector_addition", "priority": 9}`, ReasonInvalidField, "invalid priority: 9 is out of range, allowed 1..5"},
		{`{"job_type": "vector_addition", "params": [1]}`, ReasonInvalidField, "invalid params [1]: want a JSON object"},
	} {
		_, err := parse(t, tc.body, "")
		var inv *InvalidError
		if !errors.As(err, &inv) {
			t.Errorf("%s: error %v, want an InvalidError", tc.body, err)
			continue
		}
		if inv.Reason != tc.reason || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), tc.reason+": ") {
			t.Errorf("%s: %q (reason %s), want reason %s and %q", tc.body, err, inv.Reason, tc.reason, tc.msg)
		}
	}
}
