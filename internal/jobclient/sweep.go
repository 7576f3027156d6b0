package jobclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Axis is one dimension of a sweep's grid: a param and the values it takes.
type Axis struct {
	Param  string
	Values []any
}

// SweepSpec is a sweep as a user asks for it: the base job (Spec's fields; its JobID is unused),
// the grid of params, the devices each point runs on, and how often.
type SweepSpec struct {
	Spec
	Axes []Axis
	// Devices are device policies; each point of the grid runs on each (default cpu and gpu).
	Devices []string
	// Repeat runs each point this often (default 1).
	Repeat int
	// Parallel bounds the jobs running at once (default jobs.DefaultSweepParallel).
	Parallel int
	SweepID  string // empty: a fresh ID
}

// MaxSweepRepeat bounds --repeat.
const MaxSweepRepeat = 100

// BuildSweep expands the grid into the sweep's jobs, each built and validated as Build builds a
// job, in grid order: the first axis outermost, then the devices, then the repetitions.
func BuildSweep(s SweepSpec, known *jobs.Kinds) (jobs.SweepRequest, error) {
	if s.SweepID == "" {
		s.SweepID = jobs.NewSweepID()
	}
	if err := jobs.ValidateSweepID(s.SweepID); err != nil {
		return jobs.SweepRequest{}, err
	}
	if len(s.Devices) == 0 {
		s.Devices = []string{jobs.DeviceCPU, jobs.DeviceGPU}
	}
	for _, d := range s.Devices {
		if err := jobs.ValidateDevice(d); err != nil {
			return jobs.SweepRequest{}, err
		}
	}
	if s.Repeat == 0 {
		s.Repeat = 1
	}
	if s.Repeat < 1 || s.Repeat > MaxSweepRepeat {
		return jobs.SweepRequest{}, fmt.Errorf("invalid --repeat %d: allowed 1..%d", s.Repeat, MaxSweepRepeat)
	}
	if s.Parallel < 0 || s.Parallel > jobs.MaxSweepParallel {
		return jobs.SweepRequest{}, fmt.Errorf("invalid --parallel %d: allowed 1..%d", s.Parallel, jobs.MaxSweepParallel)
	}
	n := s.Repeat * len(s.Devices)
	seen := map[string]bool{}
	for _, a := range s.Axes {
		if len(a.Values) == 0 {
			return jobs.SweepRequest{}, fmt.Errorf("sweep param %s has no values", a.Param)
		}
		if seen[a.Param] {
			return jobs.SweepRequest{}, fmt.Errorf("sweep param %s is given twice", a.Param)
		}
		seen[a.Param] = true
		n *= len(a.Values)
		if n > jobs.MaxSweepJobs {
			break
		}
	}
	if n > jobs.MaxSweepJobs {
		return jobs.SweepRequest{}, fmt.Errorf("the sweep would run more than %d jobs: fewer values, devices or repetitions", jobs.MaxSweepJobs)
	}
	out := jobs.SweepRequest{SweepID: s.SweepID, Parallel: s.Parallel, SubmitTime: time.Now().UTC()}
	var points []map[string]any
	expand(s.Axes, map[string]any{}, &points)
	for _, point := range points {
		for _, device := range s.Devices {
			spec := s.Spec
			spec.Device, spec.Set = device, map[string]any{}
			for k, v := range s.Set {
				spec.Set[k] = v
			}
			for k, v := range point {
				spec.Set[k] = v
			}
			for range s.Repeat {
				spec.JobID = jobs.SweepJobID(s.SweepID, len(out.Jobs), n)
				req, err := Build(spec, known)
				if err != nil {
					return jobs.SweepRequest{}, fmt.Errorf("sweep point %s: %w", describePoint(point, device), err)
				}
				req.SweepID = s.SweepID
				out.Jobs = append(out.Jobs, req)
			}
		}
	}
	out.JobType = out.Jobs[0].JobType
	return out, out.Validate()
}

// expand appends every combination of the axes' values to points.
func expand(axes []Axis, point map[string]any, points *[]map[string]any) {
	if len(axes) == 0 {
		p := make(map[string]any, len(point))
		for k, v := range point {
			p[k] = v
		}
		*points = append(*points, p)
		return
	}
	for _, v := range axes[0].Values {
		point[axes[0].Param] = v
		expand(axes[1:], point, points)
	}
	delete(point, axes[0].Param)
}

func describePoint(point map[string]any, device string) string {
	var parts []string
	for k, v := range point {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(append(parts, "device="+device), " ")
}

// SubmitSweep starts the sweep's workflow. A sweep ID that exists already is an error.
func SubmitSweep(ctx context.Context, c client.Client, s jobs.SweepRequest) error {
	attrs := []temporal.SearchAttributeUpdate{workflows.SearchJobType.ValueSet(s.JobType)}
	if t := s.Jobs[0].Tenant; t != "" {
		attrs = append(attrs, workflows.SearchTenant.ValueSet(t))
	}
	_, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       s.SweepID,
		TaskQueue:                                jobs.JobQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(attrs...),
		StaticSummary:                            fmt.Sprintf("sweep of %d %s jobs (%d at once)", len(s.Jobs), s.JobType, s.Parallel),
	}, workflows.SweepWorkflowName, s)
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &already) {
		return fmt.Errorf("sweep %s exists already: %w", s.SweepID, ErrJobExists)
	}
	if err != nil {
		return fmt.Errorf("submit sweep %s: %w", s.SweepID, err)
	}
	return nil
}

// IsSweep says whether the workflow id is a sweep (rather than a job).
func IsSweep(ctx context.Context, c client.Client, id string) (bool, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, fmt.Errorf("no job or sweep %s in this namespace", id)
	}
	if err != nil {
		return false, fmt.Errorf("describe %s: %w", id, err)
	}
	return desc.GetWorkflowExecutionInfo().GetType().GetName() == workflows.SweepWorkflowName, nil
}

// SweepJobs returns the IDs of the jobs the sweep has started so far, in the order it started
// them, from its history.
func SweepJobs(ctx context.Context, c client.Client, sweepID string) ([]string, error) {
	var ids []string
	it := c.GetWorkflowHistory(ctx, sweepID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", sweepID, err)
		}
		if a := ev.GetStartChildWorkflowExecutionInitiatedEventAttributes(); a != nil {
			ids = append(ids, a.GetWorkflowId())
		}
	}
	return ids, nil
}

// AwaitSweep waits for the sweep to end and returns its result. Of a canceled sweep it returns
// the results of the jobs it had started (each waited for), with status canceled.
func AwaitSweep(ctx context.Context, c client.Client, sweepID string) (jobs.SweepResult, error) {
	var res jobs.SweepResult
	err := c.GetWorkflow(ctx, sweepID, "").Get(ctx, &res)
	if err == nil {
		return res, nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	var canceled *temporal.CanceledError
	var terminated *temporal.TerminatedError
	if !errors.As(err, &canceled) && !errors.As(err, &terminated) {
		return res, fmt.Errorf("sweep %s: %w", sweepID, err)
	}
	ids, err := SweepJobs(ctx, c, sweepID)
	if err != nil {
		return res, err
	}
	res = jobs.SweepResult{SweepID: sweepID, Status: jobs.StatusCanceled}
	if res.Results, err = AwaitAll(ctx, c, ids); err != nil {
		return res, err
	}
	if len(res.Results) > 0 {
		res.JobType = res.Results[0].JobType
	}
	return res, nil
}
