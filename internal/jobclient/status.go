package jobclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Job states, from Temporal's execution status.
const (
	StateRunning    = "running"
	StateCompleted  = "completed"
	StateFailed     = "failed"
	StateCanceled   = "canceled"
	StateTerminated = "terminated"
	StateTimedOut   = "timed_out"
)

// State names a workflow's execution status as a job state.
func State(s enumspb.WorkflowExecutionStatus) string { return state(s) }

func state(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return StateRunning
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return StateCompleted
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return StateFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return StateCanceled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return StateTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return StateTimedOut
	}
	return strings.ToLower(s.String())
}

// Summary is one job as visibility lists it.
type Summary struct {
	JobID      string    `json:"job_id"`
	State      string    `json:"state"`
	JobType    string    `json:"job_type"`
	Device     string    `json:"device"`      // requested policy
	WorkerType string    `json:"worker_type"` // where the scheduler sent it
	Priority   int64     `json:"priority"`
	Tenant     string    `json:"tenant,omitempty"`
	StartTime  time.Time `json:"start_time"`
	CloseTime  time.Time `json:"close_time,omitzero"`
}

// Status is a job's summary, what its kernel is doing now, and its result once it ended.
type Status struct {
	Summary
	// Stage is what the job is doing, from its workflow (nil when it could not be asked).
	Stage *workflows.JobState `json:"stage,omitempty"`
	// Activity is the Execute activity in flight, if any.
	Activity *ActivityStatus `json:"activity,omitempty"`
	// Publish is the publishing of the result while the broker has not taken it, if it is so.
	Publish *ActivityStatus `json:"publish,omitempty"`
	// Prediction is where a job waiting for a worker stands, and when it should start and end
	// (see Predict; set by the caller).
	Prediction *Prediction `json:"prediction,omitempty"`
	// Result is set once the job ended.
	Result *jobs.Result `json:"result,omitempty"`
}

// ActivityStatus is the kernel run in flight.
type ActivityStatus struct {
	State       string         `json:"state"` // scheduled (waiting for a worker) or started
	Attempt     int32          `json:"attempt"`
	Worker      string         `json:"worker,omitempty"`
	Progress    *jobs.Progress `json:"progress,omitempty"`
	LastFailure string         `json:"last_failure,omitempty"`
}

// GetStatus describes one job.
func GetStatus(ctx context.Context, c client.Client, jobID string) (Status, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, jobID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return Status{}, fmt.Errorf("no job %s in this namespace", jobID)
	}
	if err != nil {
		return Status{}, fmt.Errorf("describe %s: %w", jobID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	st := Status{Summary: summaryOf(info)}
	for _, pa := range desc.GetPendingActivities() {
		name := pa.GetActivityType().GetName()
		if name != workflows.ExecuteActivity && name != workflows.PublishActivity {
			continue
		}
		a := &ActivityStatus{Attempt: pa.GetAttempt(), Worker: pa.GetLastWorkerIdentity(), State: "scheduled"}
		if pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED || pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED {
			a.State = "started"
		}
		if f := pa.GetLastFailure(); f != nil {
			a.LastFailure = f.GetMessage()
		}
		if d := pa.GetHeartbeatDetails(); d != nil {
			var p jobs.Progress
			if converter.GetDefaultDataConverter().FromPayloads(d, &p) == nil && p.Total > 0 {
				a.Progress = &p
			}
		}
		if name == workflows.PublishActivity {
			st.Publish = a
		} else {
			st.Activity = a
		}
	}
	if st.State == StateRunning {
		st.Stage = stage(ctx, c, jobID)
	} else {
		res, err := Await(ctx, c, jobID)
		if err != nil {
			return st, err
		}
		st.Result = &res
	}
	return st, nil
}

// Queued says whether the job waits for a worker, and on which queue.
func (st Status) Queued() (string, bool) {
	if st.Stage == nil || st.Stage.Queue == "" || st.Stage.Worker != nil {
		return "", false
	}
	return st.Stage.Queue, st.Stage.Stage == workflows.StageExecuting || st.Stage.Stage == workflows.StageWaitingMemory
}

// WithPrediction adds the job's prediction to st when it waits for a worker.
func WithPrediction(ctx context.Context, c client.Client, namespace string, st Status) Status {
	queue, ok := st.Queued()
	if !ok {
		return st
	}
	preds, err := Predict(ctx, c, namespace, []string{queue}, time.Now())
	if err != nil {
		return st
	}
	if p, ok := preds[st.JobID]; ok {
		st.Prediction = &p
	}
	return st
}

// stage asks the job's workflow what it is doing; nil when it cannot say within a second (no
// scheduler worker is running, or the workflow has not run its first task yet).
func stage(ctx context.Context, c client.Client, jobID string) *workflows.JobState {
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, jobID, "", workflows.StateQuery)
	if err != nil {
		return nil
	}
	var st workflows.JobState
	if v.Get(&st) != nil {
		return nil
	}
	return &st
}

func summaryOf(info *workflowpb.WorkflowExecutionInfo) Summary {
	s := Summary{
		JobID:     info.GetExecution().GetWorkflowId(),
		State:     state(info.GetStatus()),
		StartTime: info.GetStartTime().AsTime(),
	}
	if info.GetCloseTime() != nil {
		s.CloseTime = info.GetCloseTime().AsTime()
	}
	dc := converter.GetDefaultDataConverter()
	for name, p := range info.GetSearchAttributes().GetIndexedFields() {
		switch name {
		case "JobType":
			dc.FromPayload(p, &s.JobType) //nolint:errcheck // a malformed attribute stays empty
		case "Device":
			dc.FromPayload(p, &s.Device) //nolint:errcheck
		case "WorkerType":
			dc.FromPayload(p, &s.WorkerType) //nolint:errcheck
		case "Tenant":
			dc.FromPayload(p, &s.Tenant) //nolint:errcheck
		case "Priority":
			dc.FromPayload(p, &s.Priority) //nolint:errcheck
		}
	}
	return s
}

// Filter selects jobs for List.
type Filter struct {
	State   string // running, completed, failed, canceled, terminated, timed_out; "" for all
	JobType string
	Device  string
	Tenant  string
	Limit   int // default 50
}

var visibilityStatus = map[string]string{
	StateRunning: "Running", StateCompleted: "Completed", StateFailed: "Failed", StateCanceled: "Canceled",
	StateTerminated: "Terminated", StateTimedOut: "TimedOut",
}

// Query is the visibility query for f.
func (f Filter) Query() (string, error) {
	clauses := []string{"WorkflowType = 'JobWorkflow'"}
	if f.State != "" {
		vs, ok := visibilityStatus[f.State]
		if !ok {
			return "", fmt.Errorf("invalid status %q: allowed running, completed, failed, canceled, terminated, timed_out", f.State)
		}
		clauses = append(clauses, fmt.Sprintf("ExecutionStatus = '%s'", vs))
	}
	for _, kv := range []struct{ attr, v string }{{"JobType", f.JobType}, {"Device", f.Device}, {"Tenant", f.Tenant}} {
		if kv.v == "" {
			continue
		}
		if strings.ContainsAny(kv.v, `'"\`) {
			return "", fmt.Errorf("invalid %s %q: quotes are not allowed", strings.ToLower(kv.attr), kv.v)
		}
		clauses = append(clauses, fmt.Sprintf("%s = '%s'", kv.attr, kv.v))
	}
	return strings.Join(clauses, " AND "), nil
}

// List returns the newest jobs matching f, newest first.
func List(ctx context.Context, c client.Client, f Filter) ([]Summary, error) {
	q, err := f.Query()
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	var out []Summary
	var token []byte
	for len(out) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: int32(min(limit, 1000)), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list jobs (%s): %w", q, err)
		}
		for _, info := range resp.GetExecutions() {
			if len(out) < limit {
				out = append(out, summaryOf(info))
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	return out, nil
}

// Cancel asks a running job to stop. The kernel stops within one step once its worker hears of
// it, and the job's result says canceled.
func Cancel(ctx context.Context, c client.Client, jobID string) error {
	err := c.CancelWorkflow(ctx, jobID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("no running job %s", jobID)
	}
	if err != nil {
		return fmt.Errorf("cancel %s: %w", jobID, err)
	}
	return nil
}

// SearchAttributes are the ones a job is submitted with.
func SearchAttributes(req jobs.Request) temporal.SearchAttributes {
	return workflows.SearchAttributes(req)
}
