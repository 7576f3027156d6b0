package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling"
)

// ExecuteInput is the Execute activity's input: the job and its validated params.
type ExecuteInput struct {
	JobID   string `json:"job_id"`
	JobType string `json:"job_type"`
	Params  []byte `json:"params"`
}

// JobWorkflow runs one job: Schedule picks the task queue, Execute runs the kernel on a worker of
// that kind, PublishResult sends the result to RabbitMQ. Failed and canceled jobs are published
// too, so the monitor sees every job exactly as it ended.
func JobWorkflow(ctx workflow.Context, req jobs.Request) (jobs.Result, error) {
	info := workflow.GetInfo(ctx)
	req.JobID = info.WorkflowExecution.ID // the workflow ID is the job ID
	res := jobs.Result{
		JobID:           req.JobID,
		JobType:         req.JobType,
		Params:          req.Params,
		Status:          jobs.StatusFailed,
		SubmitTime:      req.SubmitTime,
		RequestedDevice: req.EffectiveDevice(),
		Priority:        req.EffectivePriority(),
		Tenant:          req.Tenant,
	}
	if res.SubmitTime.IsZero() {
		res.SubmitTime = info.WorkflowStartTime
	}

	var d scheduling.Decision
	sctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        10,
			NonRetryableErrorTypes: []string{jobs.ErrInvalidParams},
		},
	})
	if err := workflow.ExecuteLocalActivity(sctx, ScheduleActivity, req).Get(ctx, &d); err != nil {
		return finish(ctx, res, err)
	}
	res.Params = d.Params
	res.Fallback = d.Fallback
	res.ScheduleReason = d.Reason
	res.EstimatedTime = d.EstimatedTime
	upsertWorkerType(ctx, d.WorkerType)

	out, err := execute(ctx, req, d)
	if err != nil && d.WorkerType == jobs.WorkerTypeGPU && req.EffectiveDevice() != jobs.DeviceRequireGPU && isScheduleToStartTimeout(err) {
		// The GPU workers were gone or too busy to start it in time: run it on a CPU, and say so.
		d = d.OnCPU(fmt.Sprintf("no GPU worker started the job within %s", d.ScheduleToStart))
		res.Fallback, res.ScheduleReason, res.EstimatedTime = d.Fallback, d.Reason, d.EstimatedTime
		workflow.GetLogger(ctx).Info("falling back to CPU", "reason", d.Fallback)
		upsertWorkerType(ctx, d.WorkerType)
		out, err = execute(ctx, req, d)
	}
	if err != nil {
		if d.WorkerType == jobs.WorkerTypeGPU && isScheduleToStartTimeout(err) {
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"no GPU worker started the job within %s (device gpu! waits only for a GPU): start a GPU worker or submit with --device gpu",
				d.ScheduleToStart), jobs.ErrNoWorker, err)
		}
		return finish(ctx, res, err)
	}
	res = withJob(out, res)
	res.Status = jobs.StatusCompleted
	if d.WorkerType == jobs.WorkerTypeGPU && res.WorkerType != jobs.WorkerTypeGPU {
		// Labels come from the hardware that ran the job, never from the queue it was sent to.
		res.Fallback = "a CPU worker took the job from " + d.Queue
	}
	if err := publish(ctx, res); err != nil {
		return res, err
	}
	return res, nil
}

// upsertWorkerType records where the job was sent, so `starter list` and the Web UI can filter
// on it. A failure only loses that label, never the job.
func upsertWorkerType(ctx workflow.Context, workerType string) {
	if v, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(SearchWorkerType); ok && v == workerType {
		return // set at submission already (device cpu or gpu!): no extra history event
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchWorkerType.ValueSet(workerType)); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute WorkerType not set", "error", err)
	}
}

func execute(ctx workflow.Context, req jobs.Request, d scheduling.Decision) (jobs.Result, error) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              d.Queue,
		ScheduleToStartTimeout: d.ScheduleToStart,
		StartToCloseTimeout:    d.StartToClose,
		HeartbeatTimeout:       d.HeartbeatTimeout,
		WaitForCancellation:    true, // report "canceled" only once the kernel has stopped
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{jobs.ErrInvalidParams, jobs.ErrResourceExhausted, jobs.ErrKernelPanic},
		},
		Priority: temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
	})
	var out jobs.Result
	err := workflow.ExecuteActivity(actx, ExecuteActivity, ExecuteInput{JobID: req.JobID, JobType: req.JobType, Params: d.Params}).Get(ctx, &out)
	return out, err
}

// withJob fills the job-level fields, which the worker does not know, into a worker's result.
func withJob(r, job jobs.Result) jobs.Result {
	r.JobID, r.JobType, r.Params = job.JobID, job.JobType, job.Params
	r.SubmitTime, r.RequestedDevice, r.Priority, r.Tenant = job.SubmitTime, job.RequestedDevice, job.Priority, job.Tenant
	r.Fallback, r.ScheduleReason, r.EstimatedTime = job.Fallback, job.ScheduleReason, job.EstimatedTime
	return r
}

// finish publishes a failed or canceled job's result and returns the workflow's error.
func finish(ctx workflow.Context, res jobs.Result, err error) (jobs.Result, error) {
	res.ErrorType, res.Error = Classify(err)
	res.EndTime = workflow.Now(ctx)
	pctx := ctx
	if res.ErrorType == jobs.ErrCanceled {
		res.Status = jobs.StatusCanceled
		pctx, _ = workflow.NewDisconnectedContext(ctx) // publish even though the workflow is canceled
	}
	if perr := publish(pctx, res); perr != nil {
		return res, perr
	}
	if res.Status == jobs.StatusCanceled {
		return res, temporal.NewCanceledError(res.Error)
	}
	return res, temporal.NewNonRetryableApplicationError(res.Error, res.ErrorType, err)
}

// publish sends the result to RabbitMQ. It is retried until it succeeds: a result is never
// dropped because the broker was down for a while, and the monitor de-duplicates by job_id.
func publish(ctx workflow.Context, res jobs.Result) error {
	pctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
		},
	})
	if err := workflow.ExecuteLocalActivity(pctx, PublishActivity, res).Get(ctx, nil); err != nil {
		return fmt.Errorf("publish result of %s: %w", res.JobID, err)
	}
	return nil
}

// Classify returns an error's type (one of the Err* constants, or the application error's own
// type) and its innermost message, without Temporal's wrapping.
func Classify(err error) (errType, msg string) {
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	var canceledErr *temporal.CanceledError
	switch {
	case errors.As(err, &canceledErr):
		return jobs.ErrCanceled, "job canceled"
	case errors.As(err, &appErr):
		t := appErr.Type()
		if t == "" {
			t = jobs.ErrKernel
		}
		return t, appErr.Message()
	case errors.As(err, &timeoutErr):
		return jobs.ErrTimeout, fmt.Sprintf("job timed out (%s)", timeoutKind(timeoutErr))
	default:
		return jobs.ErrKernel, err.Error()
	}
}

func timeoutKind(t *temporal.TimeoutError) string {
	switch t.TimeoutType() {
	case enumspb.TIMEOUT_TYPE_START_TO_CLOSE:
		return "an attempt ran past its start-to-close timeout; raise it with --timeout"
	case enumspb.TIMEOUT_TYPE_HEARTBEAT:
		return "the worker stopped heartbeating"
	case enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START:
		return "no worker started it in time"
	default:
		return t.TimeoutType().String()
	}
}

func isScheduleToStartTimeout(err error) bool {
	var t *temporal.TimeoutError
	return errors.As(err, &t) && t.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}
