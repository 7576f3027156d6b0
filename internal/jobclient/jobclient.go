// Package jobclient is how programs submit jobs and read their results: the starter CLI, the
// demo, the benchmarks and the end-to-end tests all go through it, so they exercise one path.
package jobclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Spec is what a user asks for; Build turns it into a request.
type Spec struct {
	JobType string
	// Params is a JSON object: the job's params, optionally in the seed's shape with "job_type"
	// and "prefer_gpu" keys.
	Params string
	// Set overrides single params (from --size, --param key=value, ...), applied over Params.
	Set      map[string]any
	Device   string
	Priority int
	Tenant   string
	Timeout  time.Duration
	JobID    string // empty: a fresh ID
}

// Build turns the spec into a request. A kind that known holds (the built-in kinds, for the
// starter) is validated here, so a bad job is rejected before it reaches the server; another kind
// is passed on as given, and the scheduler, which knows it, validates it (see Admitted).
func Build(s Spec, known *jobs.Kinds) (jobs.Request, error) {
	fields := map[string]any{}
	if strings.TrimSpace(s.Params) != "" {
		dec := json.NewDecoder(strings.NewReader(s.Params))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return jobs.Request{}, fmt.Errorf("--params is not a JSON object: %w", err)
		}
		if dec.More() || dec.InputOffset() < int64(len(strings.TrimSpace(s.Params))) {
			return jobs.Request{}, errors.New("--params has data after its JSON object: give one object")
		}
	}
	if jt, ok := fields["job_type"]; ok {
		name, _ := jt.(string)
		if s.JobType != "" && name != s.JobType {
			return jobs.Request{}, fmt.Errorf("--params says job_type %q but the command says %q", name, s.JobType)
		}
		s.JobType = name
		delete(fields, "job_type")
	}
	if pg, ok := fields["prefer_gpu"]; ok {
		prefer, isBool := pg.(bool)
		if !isBool {
			return jobs.Request{}, errors.New("--params prefer_gpu must be true or false")
		}
		if s.Device == "" {
			s.Device = map[bool]string{true: jobs.DeviceGPU, false: jobs.DeviceCPU}[prefer]
		}
		delete(fields, "prefer_gpu")
	}
	for k, v := range s.Set {
		fields[k] = v
	}
	if s.JobType == "" {
		return jobs.Request{}, fmt.Errorf("no job type given: known types are %s (and any kind the cluster's workers add)", strings.Join(known.Names(), ", "))
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return jobs.Request{}, err
	}
	if _, err := known.Spec(s.JobType); err == nil {
		p, err := known.Decode(s.JobType, raw)
		if err != nil {
			return jobs.Request{}, err
		}
		if raw, err = json.Marshal(p); err != nil {
			return jobs.Request{}, err
		}
	}
	if s.JobID == "" {
		s.JobID = jobs.NewJobID()
	}
	req := jobs.Request{
		JobID: s.JobID, JobType: s.JobType, Params: raw, Device: s.Device,
		Priority: s.Priority, Tenant: s.Tenant, Timeout: s.Timeout, SubmitTime: time.Now().UTC(),
	}
	return req, req.Validate()
}

// ErrJobExists is Submit's error for a job ID that was used before: job IDs are never reused, so
// a client that retries a submission (the RabbitMQ bridge after a redelivery) starts nothing twice.
var ErrJobExists = errors.New("job IDs are never reused")

// Submit starts the job's workflow. A job ID that exists already is an error: job IDs are never
// reused, so resubmitting with the same --id is safe.
func Submit(ctx context.Context, c client.Client, req jobs.Request) error {
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       req.JobID,
		TaskQueue:                                jobs.JobQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		Priority:                                 temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
		TypedSearchAttributes:                    SearchAttributes(req),
		StaticSummary:                            workflows.Summary(req),
	}, workflows.JobWorkflowName, req)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return fmt.Errorf("job %s exists already: %w", req.JobID, ErrJobExists)
	}
	if err != nil {
		return fmt.Errorf("submit %s: %w", req.JobID, err)
	}
	return nil
}

// SubmitAll submits every request concurrently and returns one error per request (nil for the
// ones that were accepted).
func SubmitAll(ctx context.Context, c client.Client, reqs []jobs.Request) []error {
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, r := range reqs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = Submit(ctx, c, r)
		}()
	}
	wg.Wait()
	return errs
}

// Await waits for the job to end and returns its result. A job that failed or was canceled is
// returned as a result with that status and the error, not as an error: only failing to reach
// Temporal, or an unknown job, is an error.
func Await(ctx context.Context, c client.Client, jobID string) (jobs.Result, error) {
	var res jobs.Result
	err := c.GetWorkflow(ctx, jobID, "").Get(ctx, &res)
	// A long poll the server cuts (a busy frontend resets the stream) is not the end of the
	// wait: poll again, for as long as such errors last at most (awaitTransientFor).
	for backoff, since := 100*time.Millisecond, time.Now(); err != nil && ctx.Err() == nil && transient(err) && time.Since(since) < awaitTransientFor; backoff = min(2*backoff, 2*time.Second) {
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		if ctx.Err() == nil {
			err = c.GetWorkflow(ctx, jobID, "").Get(ctx, &res)
		}
	}
	if err == nil {
		return res, nil
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return res, fmt.Errorf("no job %s in this namespace", jobID)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	var terminated *temporal.TerminatedError
	var timeout *temporal.TimeoutError
	if !errors.As(err, &appErr) && !errors.As(err, &canceled) && !errors.As(err, &terminated) && !errors.As(err, &timeout) {
		return res, fmt.Errorf("wait for %s: %w", jobID, err)
	}
	// The workflow's error carries the result it published: show that one, as the monitor does.
	if pub, ok := workflows.PublishedResult(err); ok {
		return pub, nil
	}
	// Terminated from outside (or by an older gpujobs): rebuild what can be known.
	res.JobID, res.Status = jobID, jobs.StatusFailed
	res.ErrorType, res.Error = workflows.Classify(err)
	if res.ErrorType == jobs.ErrCanceled {
		res.Status = jobs.StatusCanceled
	}
	if terminated != nil {
		res.ErrorType, res.Error = "Terminated", "job terminated"
	}
	// The job's type and params are in its input; fetch them for the report.
	if req, herr := Request(ctx, c, jobID); herr == nil {
		res.JobType, res.Params, res.RequestedDevice = req.JobType, req.Params, req.EffectiveDevice()
	}
	return res, nil
}

// awaitTransientFor bounds how long Await keeps polling through transient errors: a server that
// stays unreachable is reported, not waited for in silence.
const awaitTransientFor = time.Minute

// transient tells the errors of a reachable but busy or restarting server (a stream reset, a
// frontend that is unavailable for a moment) from those that will not change on a retry.
func transient(err error) bool {
	var canceled *serviceerror.Canceled
	var unavailable *serviceerror.Unavailable
	var exhausted *serviceerror.ResourceExhausted
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &canceled) || errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &deadline) {
		return true
	}
	switch status.Code(err) { // a gRPC status, wrapped or not
	case codes.Canceled, codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// ErrNoVerdict means no scheduler worker decided on a job within the wait.
var ErrNoVerdict = errors.New("no verdict yet")

// Verdict waits until the job's scheduler has accepted it (it got past scheduling) or rejected
// it, at most wait: a rejection (invalid params, unknown kind) is returned as an error with the
// scheduler's message, ErrNoVerdict when none came in time. A client that does not know a kind
// learns this way what the cluster thinks of it.
func Verdict(ctx context.Context, c client.Client, jobID string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		desc, err := c.DescribeWorkflowExecution(ctx, jobID, "")
		if err != nil {
			return fmt.Errorf("describe %s: %w", jobID, err)
		}
		if desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			res, err := Await(ctx, c, jobID)
			if err != nil {
				return err
			}
			if res.Status == jobs.StatusFailed && res.ErrorType == jobs.ErrInvalidParams {
				return errors.New(res.Error)
			}
			return nil
		}
		if st := stage(ctx, c, jobID); st != nil && st.Rejected != "" {
			return errors.New(st.Rejected)
		} else if st != nil && st.Scheduled {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrNoVerdict
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AwaitAll waits for all the jobs, 32 at a time, and returns their results in order.
func AwaitAll(ctx context.Context, c client.Client, ids []string) ([]jobs.Result, error) {
	out := make([]jobs.Result, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = Await(ctx, c, id)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Request reads the job's request from the first event of its history.
func Request(ctx context.Context, c client.Client, jobID string) (jobs.Request, error) {
	var req jobs.Request
	it := c.GetWorkflowHistory(ctx, jobID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return req, fmt.Errorf("no history for %s", jobID)
	}
	ev, err := it.Next()
	if err != nil {
		return req, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil || len(attrs.GetInput().GetPayloads()) == 0 {
		return req, fmt.Errorf("%s has no input", jobID)
	}
	data := attrs.GetInput().GetPayloads()[0].GetData()
	err = json.NewDecoder(bytes.NewReader(data)).Decode(&req)
	return req, err
}
