package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
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
	// EstimatedTime is the scheduler's prediction of the kernel's time on this device, seconds:
	// the worker fails an attempt whose progress stalls far beyond it.
	EstimatedTime float64 `json:"estimated_time,omitempty"`
}

// StateQuery is the query that returns a running job's JobState.
const StateQuery = "state"

// ProgressSignal carries a worker's jobs.Heartbeat to the job's workflow now and then (when a
// job starts on a worker, and when its progress moved), so the workflow's current details in the
// Web UI say where it runs and how far it is.
const ProgressSignal = "progress"

// Stages of a job, as StateQuery reports them.
const (
	StageScheduling    = "scheduling"
	StageExecuting     = "executing"      // queued for a worker or running on one: see the Execute activity
	StageWaitingMemory = "waiting_memory" // no worker had the memory for it; offered again after a pause
	StagePublishing    = "publishing"     // the result is being sent to RabbitMQ
	StageWaitingBroker = "waiting_broker" // RabbitMQ did not take the result; retried until it does
	StageDone          = "done"
)

// JobState is what StateQuery returns.
type JobState struct {
	Stage string `json:"stage"`
	// Detail explains the stage: the last publish error, the memory the job waits for, ...
	Detail string `json:"detail,omitempty"`
	// Since is when the job entered the stage.
	Since time.Time `json:"since"`
	// Scheduled is set once the scheduler accepted the job; Rejected holds its reason when it
	// did not (invalid params, unknown kind): what a client that does not know the kind waits for.
	Scheduled bool   `json:"scheduled,omitempty"`
	Rejected  string `json:"rejected,omitempty"`
	// Worker is the worker's last word on the job (who runs it, its progress), from its signals;
	// StartedAt is when the first came.
	Worker    *jobs.Heartbeat `json:"worker,omitempty"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	// Queue, Priority and Total place the job for predictions of when queued jobs start: the
	// task queue it is on, its priority, and the time it is expected to take there.
	Queue    string        `json:"queue,omitempty"`
	Priority int           `json:"priority,omitempty"`
	Total    time.Duration `json:"total,omitempty"`
}

// Timeouts and retries of the steps around the kernel.
const (
	// scheduleWindow bounds the Schedule local activity's retries; only a broken Temporal frontend
	// makes it fail (an unreachable queue description does not), and then the job fails clearly.
	scheduleWindow = 10 * time.Minute
	// quickPublishWindow is how long the fast path (a local activity) tries to publish before the
	// result is handed to a durable activity that the server retries for as long as it takes.
	quickPublishWindow = 5 * time.Second
	// publishMaxInterval caps the durable publish's backoff: the cost of a workflow waiting for
	// the broker is one activity attempt this often.
	publishMaxInterval = 15 * time.Second
	// busyWait* pace the offers of a job that no worker had the memory for.
	busyWaitFirst = time.Second
	busyWaitMax   = 30 * time.Second
)

// JobWorkflow runs one job: Schedule picks the task queue, Execute runs the kernel on a worker of
// that kind, PublishResult sends the result to RabbitMQ. Failed and canceled jobs are published
// too, so the monitor sees every job exactly as it ended, and a result is never dropped because
// the broker was away: publishing is retried for as long as it takes.
//
// The input is decoded here rather than by the SDK, so that a start by another client with an
// input that is not a job request still ends with a published failed result.
func JobWorkflow(ctx workflow.Context, input json.RawMessage) (jobs.Result, error) {
	info := workflow.GetInfo(ctx)
	req, decodeErr := DecodeRequest(input)
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
		SweepID:         req.SweepID,
	}
	if res.SubmitTime.IsZero() {
		res.SubmitTime = info.WorkflowStartTime
	}
	j := &job{ctx: ctx, state: JobState{Stage: StageScheduling, Since: workflow.Now(ctx)}}
	if err := workflow.SetQueryHandler(ctx, StateQuery, func() (JobState, error) { return j.state, nil }); err != nil {
		return res, err
	}
	j.listen()
	if decodeErr != nil {
		j.state.Rejected = decodeErr.Error()
		return j.finish(res, temporal.NewNonRetryableApplicationError(decodeErr.Error(), jobs.ErrInvalidParams, nil))
	}

	var d scheduling.Decision
	sctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		Summary:                fmt.Sprintf("validate %s and choose a device (policy %s)", req.JobType, req.EffectiveDevice()),
		ScheduleToCloseTimeout: scheduleWindow,
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{jobs.ErrInvalidParams},
		},
	})
	if err := workflow.ExecuteLocalActivity(sctx, ScheduleActivity, req).Get(ctx, &d); err != nil {
		j.state.Rejected = Message(err)
		return j.finish(res, err)
	}
	j.state.Scheduled = true
	res.Params = d.Params
	res.Fallback = d.Fallback
	res.ScheduleReason = d.Reason
	res.EstimatedTime = d.EstimatedTime
	res.PredictedStart = workflow.Now(ctx).Add(d.Wait)
	res.PredictedEnd = res.PredictedStart.Add(d.Total)
	upsertWorkerType(ctx, d.WorkerType)

	j.state.Queue, j.state.Priority, j.state.Total = d.Queue, req.EffectivePriority(), d.Total
	j.enter(StageExecuting, fmt.Sprintf("sent to %s: %s", d.Queue, d.Reason))
	out, err := j.execute(req, d)
	if err != nil && d.WorkerType == jobs.WorkerTypeGPU && req.EffectiveDevice() != jobs.DeviceRequireGPU {
		if why := gpuFallbackReason(err, d); why != "" {
			// The GPU workers were gone, too busy, or cannot run this kind: run it on a CPU, and say so.
			d = d.OnCPU(why)
			res.Fallback, res.ScheduleReason, res.EstimatedTime = d.Fallback, d.Reason, d.EstimatedTime
			workflow.GetLogger(ctx).Info("falling back to CPU", "reason", d.Fallback)
			upsertWorkerType(ctx, d.WorkerType)
			j.state.Queue, j.state.Total, j.state.Worker = d.Queue, d.Total, nil
			j.enter(StageExecuting, "on "+d.Queue)
			out, err = j.execute(req, d)
		}
	}
	if err != nil {
		if d.WorkerType == jobs.WorkerTypeGPU && isScheduleToStartTimeout(err) {
			err = temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"no GPU worker started the job within %s (device gpu! waits only for a GPU): start a GPU worker or submit with --device gpu",
				d.ScheduleToStart), jobs.ErrNoWorker, err)
		}
		res.WorkerID, res.WorkerType, res.Device = whoRan(err, d)
		return j.finish(res, err)
	}
	res = withJob(out, res)
	res.Status = jobs.StatusCompleted
	if d.WorkerType == jobs.WorkerTypeGPU && res.WorkerType != jobs.WorkerTypeGPU {
		// Labels come from the hardware that ran the job, never from the queue it was sent to.
		res.Fallback = "a CPU worker took the job from " + d.Queue
	}
	j.publish(res)
	return res, nil
}

// job is one JobWorkflow's state for its query, and the steps that update it.
type job struct {
	ctx   workflow.Context
	state JobState
}

func (j *job) enter(stage, detail string) {
	j.state.Stage, j.state.Detail, j.state.Since = stage, detail, workflow.Now(j.ctx)
	j.showDetails()
}

// showDetails sets the workflow's current details, the Web UI's account of where the job
// stands, from its state.
func (j *job) showDetails() {
	line := "**" + strings.ReplaceAll(j.state.Stage, "_", " ") + "**"
	if j.state.Detail != "" {
		line += ": " + j.state.Detail
	}
	if w := j.state.Worker; w != nil && j.state.Stage == StageExecuting {
		line += fmt.Sprintf("\n\nrunning on **%s** (%s, %s)", w.WorkerID, w.WorkerType, w.Device)
		if w.Total > 0 {
			line += fmt.Sprintf(", step %d of %d", w.Iteration, w.Total)
		}
		if w.Loss != nil {
			line += fmt.Sprintf(", loss %.4g", *w.Loss)
		}
	}
	workflow.SetCurrentDetails(j.ctx, line)
}

// listen keeps the state up to date with the workers' progress signals.
func (j *job) listen() {
	ch := workflow.GetSignalChannel(j.ctx, ProgressSignal)
	workflow.Go(j.ctx, func(ctx workflow.Context) {
		for {
			var hb jobs.Heartbeat
			if !ch.Receive(ctx, &hb) {
				return
			}
			if j.state.Worker == nil {
				j.state.StartedAt = workflow.Now(ctx)
			}
			j.state.Worker = &hb
			j.showDetails()
		}
	})
}

// DecodeRequest reads the workflow's input. Its errors name what could not be read; the request
// returned holds whatever could (for the failed result's job type and params).
func DecodeRequest(input json.RawMessage) (jobs.Request, error) {
	var req jobs.Request
	if len(input) == 0 || string(input) == "null" {
		return req, errors.New("the workflow input is empty: JobWorkflow takes a job request (job_type, params, device, ...)")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(input, &fields); err != nil {
		return req, fmt.Errorf("the workflow input is not a job request: want a JSON object with job_type and params, got %s", jsonKind(input))
	}
	// Field by field, in a fixed order, so that each bad field is named and the good ones still
	// fill the failed result.
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		one, _ := json.Marshal(map[string]json.RawMessage{name: fields[name]})
		var probe jobs.Request
		if err := json.Unmarshal(one, &probe); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", name, fieldError(fields[name], err)))
			continue
		}
		json.Unmarshal(one, &req) //nolint:errcheck // the probe decoded
	}
	if len(errs) > 0 {
		return req, fmt.Errorf("the workflow input is not a valid job request: %w", errors.Join(errs...))
	}
	return req, nil
}

func fieldError(raw json.RawMessage, err error) string {
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("%s is not an RFC 3339 time", raw)
	case errors.As(err, &te):
		return fmt.Sprintf("want %s, got %s", te.Type, jsonKind(raw))
	}
	return err.Error()
}

func jsonKind(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "data that is not JSON"
	}
	switch v.(type) {
	case string:
		return "a JSON string"
	case float64:
		return "a JSON number"
	case bool:
		return "a JSON boolean"
	case []any:
		return "a JSON array"
	case nil:
		return "null"
	}
	return "a JSON object"
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

// gpuFallbackReason says why a job sent to the GPU queue may run on a CPU instead, or "" when
// err is not such a reason.
func gpuFallbackReason(err error, d scheduling.Decision) string {
	var appErr *temporal.ApplicationError
	switch {
	case isScheduleToStartTimeout(err):
		return fmt.Sprintf("no GPU worker started the job within %s", d.ScheduleToStart)
	case errors.As(err, &appErr) && appErr.Type() == jobs.ErrNoImplementation:
		return "the GPU worker has no GPU implementation of this job type"
	}
	return ""
}

// execute runs the Execute activity on the decision's queue. A job that no worker has the
// memory for now (ResourceBusy) is offered again after a pause, to any worker of that queue, for
// as long as it takes; the pause grows to busyWaitMax.
func (j *job) execute(req jobs.Request, d scheduling.Decision) (jobs.Result, error) {
	actx := workflow.WithActivityOptions(j.ctx, workflow.ActivityOptions{
		TaskQueue:              d.Queue,
		ScheduleToStartTimeout: d.ScheduleToStart,
		StartToCloseTimeout:    d.StartToClose,
		HeartbeatTimeout:       d.HeartbeatTimeout,
		WaitForCancellation:    true, // report "canceled" only once the kernel has stopped
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    5,
			NonRetryableErrorTypes: []string{jobs.ErrInvalidParams, jobs.ErrResourceExhausted, jobs.ErrKernelPanic,
				jobs.ErrNoImplementation, jobs.ErrResourceBusy},
		},
		Priority: temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
		Summary:  fmt.Sprintf("run %s on a %s worker (%s)", req.JobType, strings.ToUpper(d.WorkerType), d.Queue),
	})
	in := ExecuteInput{JobID: req.JobID, JobType: req.JobType, Params: d.Params, EstimatedTime: d.EstimatedTime}
	wait := busyWaitFirst
	for {
		var out jobs.Result
		err := workflow.ExecuteActivity(actx, ExecuteActivity, in).Get(j.ctx, &out)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrResourceBusy {
			return out, err
		}
		j.enter(StageWaitingMemory, appErr.Message())
		if err := workflow.Sleep(j.ctx, wait); err != nil {
			return out, err // canceled while waiting
		}
		wait = min(2*wait, busyWaitMax)
		j.enter(StageExecuting, "on "+d.Queue)
	}
}

// withJob fills the job-level fields, which the worker does not know, into a worker's result.
func withJob(r, job jobs.Result) jobs.Result {
	r.JobID, r.JobType, r.Params = job.JobID, job.JobType, job.Params
	r.SubmitTime, r.RequestedDevice, r.Priority, r.Tenant = job.SubmitTime, job.RequestedDevice, job.Priority, job.Tenant
	r.Fallback, r.ScheduleReason, r.EstimatedTime = job.Fallback, job.ScheduleReason, job.EstimatedTime
	r.PredictedStart, r.PredictedEnd = job.PredictedStart, job.PredictedEnd
	r.SweepID = job.SweepID
	return r
}

// whoRan says which worker an Execute that failed ran on: the worker's own account (the
// details of its error, or its last heartbeat when it went silent), else the identity the
// server recorded for the attempt and the kind of queue it ran on. A job that never reached a
// worker has none.
func whoRan(err error, d scheduling.Decision) (workerID, workerType, device string) {
	var actErr *temporal.ActivityError
	if !errors.As(err, &actErr) {
		return "", "", ""
	}
	var hb jobs.Heartbeat
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	switch {
	case errors.As(err, &appErr) && appErr.HasDetails():
		_ = appErr.Details(&hb)
	case errors.As(err, &timeoutErr) && timeoutErr.HasLastHeartbeatDetails():
		_ = timeoutErr.LastHeartbeatDetails(&hb)
	}
	if hb.WorkerID != "" {
		return hb.WorkerID, hb.WorkerType, hb.Device
	}
	if actErr.Identity() == "" || isScheduleToStartTimeout(err) {
		return "", "", ""
	}
	return actErr.Identity(), d.WorkerType, ""
}

// finish publishes a failed or canceled job's result and returns the workflow's error, which
// carries the published result as its details (so clients show the same result the monitor
// stored).
func (j *job) finish(res jobs.Result, err error) (jobs.Result, error) {
	res.ErrorType, res.Error = Classify(err)
	if jobs.ValidateKindName(res.JobType) != nil {
		res.JobType = "unknown" // the error says what the request named; results carry kind-shaped names
	}
	res.EndTime = workflow.Now(j.ctx)
	if res.ErrorType == jobs.ErrCanceled {
		res.Status = jobs.StatusCanceled
		j.publish(res)
		return res, temporal.NewCanceledError(res)
	}
	j.publish(res)
	return res, temporal.NewNonRetryableApplicationError(res.Error, res.ErrorType, nil, res)
}

// publish sends the result to RabbitMQ, and does not return before the broker has confirmed it.
// The fast path is a local activity; if the broker does not take the result within
// quickPublishWindow, a regular activity takes over, whose retries the server schedules (one
// attempt at most every publishMaxInterval, no workflow task in between) for as long as the
// broker is away. The job's state says it waits for the broker, and the scheduler worker
// counts such jobs in gpujobs_results_waiting_to_publish. Both run in a context that a cancel
// of the job does not reach: a canceled job publishes "canceled", and a job canceled after its
// kernel completed still publishes "completed". The monitor de-duplicates by job_id.
func (j *job) publish(res jobs.Result) {
	ctx, _ := workflow.NewDisconnectedContext(j.ctx)
	j.enter(StagePublishing, "")
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: quickPublishWindow,
		StartToCloseTimeout:    quickPublishWindow,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2},
	})
	err := workflow.ExecuteLocalActivity(lctx, PublishActivity, res).Get(ctx, nil)
	if err == nil {
		j.enter(StageDone, res.Status)
		return
	}
	log := workflow.GetLogger(ctx)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    publishMaxInterval,
			// MaximumAttempts 0: until the broker takes it.
		},
		Summary: "publish the " + res.Status + " result to RabbitMQ",
	})
	for durable := false; err != nil; durable = true {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			log.Error("the result cannot be published", "error", Message(err))
			j.enter(StageDone, "result not published: "+Message(err))
			return
		}
		j.enter(StageWaitingBroker, Message(err))
		log.Warn("result not published yet; retrying until the broker takes it", "error", Message(err))
		if durable {
			// The server gave up on an attempt although the policy never gives up (an
			// attempt's timeout after a worker restart): pause, so this cannot spin.
			_ = workflow.Sleep(ctx, publishMaxInterval)
		}
		err = workflow.ExecuteActivity(actx, PublishActivity, res).Get(ctx, nil)
	}
	j.enter(StageDone, res.Status)
}

// PublishedResult returns the result that a JobWorkflow's error carries (the one it published),
// if it does.
func PublishedResult(err error) (res jobs.Result, ok bool) {
	defer func() {
		if recover() != nil { // details of another type, from a workflow that is not a JobWorkflow
			res, ok = jobs.Result{}, false
		}
	}()
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	switch {
	case errors.As(err, &appErr) && appErr.HasDetails():
		ok = appErr.Details(&res) == nil
	case errors.As(err, &canceled) && canceled.HasDetails():
		ok = canceled.Details(&res) == nil
	}
	return res, ok && res.JobID != ""
}

// Message is an error's innermost message, without Temporal's wrapping.
func Message(err error) string {
	_, msg := Classify(err)
	return msg
}

// Classify returns an error's type (one of the jobs.Err* constants, or the application error's
// own type) and its innermost message, without Temporal's wrapping.
func Classify(err error) (errType, msg string) {
	var appErr *temporal.ApplicationError
	var timeoutErr *temporal.TimeoutError
	var canceledErr *temporal.CanceledError
	var terminatedErr *temporal.TerminatedError
	switch {
	case errors.As(err, &canceledErr):
		return jobs.ErrCanceled, "job canceled"
	case errors.As(err, &terminatedErr):
		return jobs.ErrTerminated, "job terminated"
	case errors.As(err, &appErr):
		t, msg := appErr.Type(), appErr.Message()
		if !slices.Contains(jobs.ErrorTypes, t) {
			// A type of a user kind's own (or none): results name only the documented types.
			if t != "" {
				msg = t + ": " + msg
			}
			t = jobs.ErrKernel
		}
		return t, msg
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
