package jobclient

import (
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/workflows"
)

func TestBuild(t *testing.T) {
	r := builtin.Kinds()
	tests := []struct {
		name    string
		spec    Spec
		device  string
		params  string // substring of the resolved params
		wantErr string
	}{
		{"flags", Spec{JobType: "matrix_multiply", Set: map[string]any{"size": 64}}, "auto", `"size":64,"iterations":10`, ""},
		{"seed JSON with job_type and prefer_gpu", Spec{Params: `{"job_type": "vector_addition", "size": 1000, "prefer_gpu": true}`}, "gpu", `"size":1000`, ""},
		{"prefer_gpu false means cpu", Spec{Params: `{"job_type": "vector_addition", "prefer_gpu": false}`}, "cpu", `"iterations":100`, ""},
		{"--device wins over prefer_gpu", Spec{Params: `{"job_type": "vector_addition", "prefer_gpu": true}`, Device: "cpu"}, "cpu", "", ""},
		{"flags override --params", Spec{JobType: "matrix_multiply", Params: `{"size": 10}`, Set: map[string]any{"size": 20}}, "auto", `"size":20`, ""},
		{"job types disagree", Spec{JobType: "matrix_multiply", Params: `{"job_type": "vector_addition"}`}, "", "", `--params says job_type "vector_addition"`},
		{"no job type", Spec{Params: `{"size": 10}`}, "", "", "no job type given: known types are"},
		{"bad prefer_gpu", Spec{JobType: "matrix_multiply", Params: `{"prefer_gpu": "yes"}`}, "", "", "prefer_gpu must be true or false"},
		{"out of range", Spec{JobType: "matrix_multiply", Set: map[string]any{"size": -1}}, "", "", "invalid size: -1 is out of range"},
		{"bad priority", Spec{JobType: "matrix_multiply", Priority: 9}, "", "", "invalid priority: 9 is out of range, allowed 1..5"},
		{"bad device", Spec{JobType: "matrix_multiply", Device: "tpu"}, "", "", `invalid device "tpu"`},
		{"bad id", Spec{JobType: "matrix_multiply", JobID: "job 1"}, "", "", `invalid job_id "job 1": spaces`},
		{"foreign id", Spec{JobType: "matrix_multiply", JobID: "batch-2026-12-02/run-7"}, "auto", "", ""},
		{"trailing params", Spec{JobType: "matrix_multiply", Params: `{"size": 10} {"size": 20}`}, "", "", "--params has data after its JSON object"},
	}
	for _, tt := range tests {
		req, err := Build(tt.spec, r)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if req.EffectiveDevice() != tt.device || !strings.Contains(string(req.Params), tt.params) {
			t.Errorf("%s: device %s params %s, want %s and %s", tt.name, req.EffectiveDevice(), req.Params, tt.device, tt.params)
		}
		if jobs.ValidateJobID(req.JobID) != nil || req.SubmitTime.IsZero() {
			t.Errorf("%s: job ID %q, submit time %v", tt.name, req.JobID, req.SubmitTime)
		}
	}
}

func TestFilterQuery(t *testing.T) {
	q, err := Filter{State: "running", JobType: "matrix_multiply", Tenant: "team-a"}.Query()
	if err != nil || q != "WorkflowType = 'JobWorkflow' AND ExecutionStatus = 'Running' AND JobType = 'matrix_multiply' AND Tenant = 'team-a'" {
		t.Errorf("query %q, %v", q, err)
	}
	if _, err := (Filter{Tenant: "a' OR 1=1"}).Query(); err == nil {
		t.Error("a quote in a filter value was accepted")
	}
	if _, err := (Filter{State: "sleeping"}).Query(); err == nil {
		t.Error("an unknown status was accepted")
	}
}

func TestSearchAttributesSetWorkerTypeWhenKnown(t *testing.T) {
	for device, want := range map[string]string{"cpu": "cpu", "gpu!": "gpu", "gpu": "", "auto": ""} {
		sa := SearchAttributes(jobs.Request{JobType: "matrix_multiply", Device: device})
		got, _ := sa.GetKeyword(workflows.SearchWorkerType)
		if got != want {
			t.Errorf("device %s: WorkerType %q, want %q", device, got, want)
		}
	}
}
