// Package jobclient is how programs submit jobs and read their results: the starter CLI, the
// demo, the benchmarks and the end-to-end tests all go through it, so they exercise one path.
package jobclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/workflows"
)

// NewJobID returns a fresh job-<12 hex> ID.
func NewJobID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "job-" + hex.EncodeToString(b[:])
}

// Spec is what a user asks for; Build turns it into a validated request.
type Spec struct {
	JobType string
	// Params is a JSON object: the job's params, optionally in the seed's shape with "job_type"
	// and "prefer_gpu" keys.
	Params string
	// Set overrides single params (from --size, --iterations, ...), applied over Params.
	Set      map[string]any
	Device   string
	Priority int
	Tenant   string
	Timeout  time.Duration
	JobID    string // empty: a fresh ID
}

// Build validates the spec locally, with the same registry the workers use, so a bad job is
// rejected before it reaches the server.
func Build(s Spec, registry *kernels.Registry) (workflows.JobRequest, error) {
	fields := map[string]any{}
	if strings.TrimSpace(s.Params) != "" {
		dec := json.NewDecoder(strings.NewReader(s.Params))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return workflows.JobRequest{}, fmt.Errorf("--params is not a JSON object: %w", err)
		}
	}
	if jt, ok := fields["job_type"]; ok {
		name, _ := jt.(string)
		if s.JobType != "" && name != s.JobType {
			return workflows.JobRequest{}, fmt.Errorf("--params says job_type %q but the command says %q", name, s.JobType)
		}
		s.JobType = name
		delete(fields, "job_type")
	}
	if pg, ok := fields["prefer_gpu"]; ok {
		prefer, isBool := pg.(bool)
		if !isBool {
			return workflows.JobRequest{}, errors.New("--params prefer_gpu must be true or false")
		}
		if s.Device == "" {
			s.Device = map[bool]string{true: workflows.DeviceGPU, false: workflows.DeviceCPU}[prefer]
		}
		delete(fields, "prefer_gpu")
	}
	for k, v := range s.Set {
		fields[k] = v
	}
	if s.JobType == "" {
		return workflows.JobRequest{}, fmt.Errorf("no job type given: known types are %s", strings.Join(registry.Kinds(), ", "))
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return workflows.JobRequest{}, err
	}
	p, err := registry.Decode(s.JobType, raw)
	if err != nil {
		return workflows.JobRequest{}, err
	}
	if raw, err = json.Marshal(p); err != nil {
		return workflows.JobRequest{}, err
	}
	if s.JobID == "" {
		s.JobID = NewJobID()
	}
	req := workflows.JobRequest{
		JobID: s.JobID, JobType: s.JobType, Params: raw, Device: s.Device,
		Priority: s.Priority, Tenant: s.Tenant, Timeout: s.Timeout, SubmitTime: time.Now().UTC(),
	}
	return req, req.Validate()
}

// Submit starts the job's workflow. A job ID that exists already is an error: job IDs are never
// reused, so resubmitting with the same --id is safe.
func Submit(ctx context.Context, c client.Client, req workflows.JobRequest) error {
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       req.JobID,
		TaskQueue:                                workflows.JobQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		Priority:                                 temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
		TypedSearchAttributes:                    SearchAttributes(req),
	}, "JobWorkflow", req)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return fmt.Errorf("job %s exists already: job IDs are never reused", req.JobID)
	}
	if err != nil {
		return fmt.Errorf("submit %s: %w", req.JobID, err)
	}
	return nil
}

// SubmitAll submits every request concurrently and returns one error per request (nil for the
// ones that were accepted).
func SubmitAll(ctx context.Context, c client.Client, reqs []workflows.JobRequest) []error {
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
func Await(ctx context.Context, c client.Client, jobID string) (workflows.JobResult, error) {
	var res workflows.JobResult
	err := c.GetWorkflow(ctx, jobID, "").Get(ctx, &res)
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
	res.JobID, res.Status = jobID, workflows.StatusFailed
	res.ErrorType, res.Error = workflows.Classify(err)
	if res.ErrorType == workflows.ErrCanceled {
		res.Status = workflows.StatusCanceled
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

// AwaitAll waits for all the jobs, 32 at a time, and returns their results in order.
func AwaitAll(ctx context.Context, c client.Client, ids []string) ([]workflows.JobResult, error) {
	out := make([]workflows.JobResult, len(ids))
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
func Request(ctx context.Context, c client.Client, jobID string) (workflows.JobRequest, error) {
	var req workflows.JobRequest
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
