package workflows

import (
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpujobs/gpujobs/jobs"
)

// SweepWorkflowName is the name SweepWorkflow is registered and started under.
const SweepWorkflowName = "SweepWorkflow"

// SweepProgressQuery returns a running sweep's SweepProgress.
const SweepProgressQuery = "progress"

// SweepProgress counts a sweep's jobs by where they stand.
type SweepProgress struct {
	Total    int `json:"total"`
	Started  int `json:"started"`
	Finished int `json:"finished"`
	Failed   int `json:"failed"` // failed or canceled, among the finished
}

// SweepWorkflow runs a parameter sweep: each of the request's jobs is a child JobWorkflow (so
// the Web UI shows the sweep as a parent with its children), at most Parallel at a time, in the
// order given. A failed job does not stop the sweep; its result says why. Canceling the sweep
// cancels the running jobs and waits until their kernels have stopped, starts no further job,
// and ends the sweep as canceled.
func SweepWorkflow(ctx workflow.Context, in jobs.SweepRequest) (jobs.SweepResult, error) {
	in.SweepID = workflow.GetInfo(ctx).WorkflowExecution.ID // the workflow ID is the sweep ID
	out := jobs.SweepResult{SweepID: in.SweepID, JobType: in.JobType, Status: jobs.StatusCompleted}
	if err := in.Validate(); err != nil {
		return out, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrInvalidParams, err)
	}
	n := len(in.Jobs)
	out.Results = make([]jobs.Result, n)
	progress := SweepProgress{Total: n}
	if err := workflow.SetQueryHandler(ctx, SweepProgressQuery, func() (SweepProgress, error) { return progress, nil }); err != nil {
		return out, err
	}

	sel := workflow.NewSelector(ctx)
	running, next := 0, 0
	show := func() {
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%d of %d** jobs finished (%d failed or canceled), %d running",
			progress.Finished, n, progress.Failed, running))
	}
	for (next < n && ctx.Err() == nil) || running > 0 {
		for running < in.EffectiveParallel() && next < n && ctx.Err() == nil {
			i := next
			next++
			req := in.Jobs[i]
			req.JobID, req.SweepID = jobs.SweepJobID(in.SweepID, i, n), in.SweepID
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:            req.JobID,
				TaskQueue:             jobs.JobQueue,
				WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				// Cancel, never terminate: a canceled job stops its kernel and publishes its result.
				ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
				WaitForCancellation:   true,
				TypedSearchAttributes: SearchAttributes(req),
				StaticSummary:         Summary(req),
				Priority:              temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
			})
			f := workflow.ExecuteChildWorkflow(cctx, JobWorkflowName, req)
			running++
			progress.Started++
			sel.AddFuture(f, func(f workflow.Future) {
				running--
				progress.Finished++
				var res jobs.Result
				if err := f.Get(ctx, &res); err != nil {
					res = failedChild(req, err)
					progress.Failed++
				}
				out.Results[i] = res
				show()
			})
		}
		show()
		if running > 0 {
			sel.Select(ctx)
		}
	}
	if ctx.Err() == nil {
		return out, nil
	}
	for i := next; i < n; i++ {
		req := in.Jobs[i]
		out.Results[i] = jobs.Result{JobID: jobs.SweepJobID(in.SweepID, i, n), JobType: req.JobType, Params: req.Params,
			Status: jobs.StatusCanceled, ErrorType: jobs.ErrCanceled, Error: "sweep canceled before the job started",
			RequestedDevice: req.EffectiveDevice(), SweepID: in.SweepID}
	}
	workflow.GetLogger(ctx).Info("sweep canceled", "started", progress.Started, "of", n)
	return out, temporal.NewCanceledError("sweep canceled")
}

// failedChild is the result of a job that ended with an error: the child's own result (published
// to RabbitMQ) does not come back with an error, so the sweep records the error and the request.
func failedChild(req jobs.Request, err error) jobs.Result {
	// The child's error carries the result it published, when it got as far.
	if pub, ok := PublishedResult(err); ok {
		return pub
	}
	r := jobs.Result{JobID: req.JobID, JobType: req.JobType, Params: req.Params, Status: jobs.StatusFailed,
		RequestedDevice: req.EffectiveDevice(), Priority: req.EffectivePriority(), Tenant: req.Tenant, SweepID: req.SweepID}
	r.ErrorType, r.Error = Classify(err)
	if r.ErrorType == jobs.ErrCanceled {
		r.Status = jobs.StatusCanceled
	}
	return r
}
