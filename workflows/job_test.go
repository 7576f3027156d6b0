package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/temporalx"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/scheduling"
	"github.com/gpujobs/gpujobs/workflows"
)

// fakeInspector reports a fixed number of pollers.
type fakeInspector struct{ pollers int }

func (f fakeInspector) Inspect(context.Context, string) (scheduling.QueueState, error) {
	return scheduling.QueueState{Pollers: f.pollers}, nil
}

// fakeBroker records what is published and fails the first failures calls.
type fakeBroker struct {
	mu       sync.Mutex
	failures int
	calls    int
	results  []jobs.Result
}

func (b *fakeBroker) Publish(_ context.Context, id string, body []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.calls <= b.failures {
		return errors.New("connection refused")
	}
	var r jobs.Result
	if err := json.Unmarshal(body, &r); err != nil || r.JobID != id {
		return errors.New("bad message")
	}
	b.results = append(b.results, r)
	return nil
}

type harness struct {
	testsuite.WorkflowTestSuite
	env     *testsuite.TestWorkflowEnvironment
	broker  *fakeBroker
	queues  []string                   // task queue of each Execute attempt
	options []workflow.ActivityOptions // options the workflow scheduled Execute with
}

// recorder is a workflow interceptor that records the options of every Execute call (the test
// environment's activity info lacks some of them, such as the priority).
type recorder struct {
	interceptor.WorkerInterceptorBase
	h *harness
}

func (r *recorder) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &recorderInbound{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, h: r.h}
}

type recorderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	h *harness
}

func (r *recorderInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return r.Next.Init(&recorderOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: outbound}, h: r.h})
}

type recorderOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	h *harness
}

func (r *recorderOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if activityType == workflows.ExecuteActivity {
		r.h.options = append(r.h.options, workflow.GetActivityOptions(ctx))
	}
	return r.Next.ExecuteActivity(ctx, activityType, args...)
}

func newHarness(t *testing.T, gpuPollers int) *harness {
	h := &harness{broker: &fakeBroker{}}
	h.SetLogger(temporalx.Logger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))))
	h.env = h.NewTestWorkflowEnvironment()
	h.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "job-0123456789ab"})
	h.env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&recorder{h: h}}})
	h.env.RegisterWorkflow(workflows.JobWorkflow)
	sched := &activities.Scheduler{Kinds: builtin.Kinds(), Inspector: fakeInspector{gpuPollers}, Logger: zap.NewNop()}
	h.env.RegisterActivityWithOptions(sched.Schedule, activity.RegisterOptions{Name: workflows.ScheduleActivity})
	h.env.RegisterActivityWithOptions((&activities.Publisher{Broker: h.broker}).PublishResult, activity.RegisterOptions{Name: workflows.PublishActivity})
	h.env.RegisterActivityWithOptions(func(context.Context, workflows.ExecuteInput) (jobs.Result, error) {
		return jobs.Result{}, errors.New("not mocked")
	}, activity.RegisterOptions{Name: workflows.ExecuteActivity})
	h.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == workflows.ExecuteActivity {
			h.queues = append(h.queues, info.TaskQueue)
		}
	})
	t.Cleanup(func() { h.env.AssertExpectations(t) })
	return h
}

// ran returns what a worker of that type reports for a completed job.
func ran(workerType string) jobs.Result {
	return jobs.Result{WorkerID: workerType + "-1", WorkerType: workerType, Device: workerType + " device", ProcessingTime: 0.5, Metrics: map[string]float64{"gflops": 100}}
}

func request(device, params string) jobs.Request {
	return jobs.Request{JobID: "job-0123456789ab", JobType: "matrix_multiply", Params: json.RawMessage(params), Device: device, SubmitTime: time.Unix(1700000000, 0)}
}

func (h *harness) run(t *testing.T, req jobs.Request) (jobs.Result, error) {
	t.Helper()
	input, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return h.runInput(t, input)
}

// runInput starts the workflow with a raw input, as a client sends it.
func (h *harness) runInput(t *testing.T, input json.RawMessage) (jobs.Result, error) {
	t.Helper()
	h.env.ExecuteWorkflow(workflows.JobWorkflow, input)
	if !h.env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var res jobs.Result
	err := h.env.GetWorkflowError()
	if err == nil {
		if gerr := h.env.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, err
}

func (h *harness) published(t *testing.T) jobs.Result {
	t.Helper()
	if len(h.broker.results) != 1 {
		t.Fatalf("published %d results, want exactly 1", len(h.broker.results))
	}
	return h.broker.results[0]
}

func TestGPURouteWhenAGPUWorkerPolls(t *testing.T) {
	h := newHarness(t, 1)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("gpu"), nil).Once()
	res, err := h.run(t, request("gpu", `{"size": 64}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.queues, ","); got != jobs.GPUQueue {
		t.Errorf("Execute ran on %q, want gpu_queue", got)
	}
	if res.WorkerType != "gpu" || res.Fallback != "" || res.Status != jobs.StatusCompleted {
		t.Errorf("result %+v, want a completed GPU run without fallback", res)
	}
	if !strings.Contains(string(res.Params), `"size":64`) || !strings.Contains(string(res.Params), `"iterations":10`) {
		t.Errorf("params %s: want the validated params with defaults filled in", res.Params)
	}
	pub := h.published(t)
	if pub.JobID != "job-0123456789ab" || pub.WorkerType != "gpu" || pub.Status != jobs.StatusCompleted || pub.SubmitTime.IsZero() {
		t.Errorf("published %+v", pub)
	}
}

func TestCPURouteWhenCPURequested(t *testing.T) {
	h := newHarness(t, 3) // GPU workers are up, but the job asks for the CPU
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("cpu", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.queues, ","); got != jobs.CPUQueue {
		t.Errorf("Execute ran on %q, want cpu_queue", got)
	}
	if res.Fallback != "" || res.ScheduleReason != "device cpu requested" || res.RequestedDevice != "cpu" {
		t.Errorf("result %+v", res)
	}
}

func TestFallbackToCPUWhenNoGPUWorkerPolls(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("gpu", `{"size": 8}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.queues, ","); got != jobs.CPUQueue {
		t.Errorf("Execute ran on %q, want cpu_queue", got)
	}
	if res.WorkerType != "cpu" || res.Fallback != "no GPU worker polling gpu_queue" || res.RequestedDevice != "gpu" {
		t.Errorf("result %+v, want a CPU run labelled as a fallback", res)
	}
	if pub := h.published(t); pub.Fallback != res.Fallback {
		t.Errorf("published fallback %q", pub.Fallback)
	}
}

func TestFallbackWhenNoGPUWorkerStartsTheJob(t *testing.T) {
	h := newHarness(t, 1)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{},
		temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)).Once()
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("gpu", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.queues, ","); got != "gpu_queue,cpu_queue" {
		t.Errorf("Execute ran on %q, want gpu_queue then cpu_queue", got)
	}
	if res.WorkerType != "cpu" || !strings.Contains(res.Fallback, "no GPU worker started the job within 2m0s") {
		t.Errorf("result %+v", res)
	}
}

func TestRequireGPUFailsClearlyWhenNoGPUWorkerComes(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{},
		temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)).Once()
	_, err := h.run(t, request("gpu!", `{}`))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrNoWorker {
		t.Fatalf("err = %v, want a %s application error", err, jobs.ErrNoWorker)
	}
	if got := strings.Join(h.queues, ","); got != jobs.GPUQueue {
		t.Errorf("Execute ran on %q, want gpu_queue only (never a CPU for gpu!)", got)
	}
	if pub := h.published(t); pub.Status != jobs.StatusFailed || !strings.Contains(pub.Error, "no GPU worker started the job within 10m0s") {
		t.Errorf("published %+v", pub)
	}
}

func TestInvalidParamsFailFastWithoutRetry(t *testing.T) {
	h := newHarness(t, 1)
	_, err := h.run(t, request("gpu", `{"size": -1}`))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrInvalidParams || !appErr.NonRetryable() {
		t.Fatalf("err = %v, want a non-retryable %s application error", err, jobs.ErrInvalidParams)
	}
	if want := "matrix_multiply: invalid size: -1 is out of range, allowed 1..32768"; appErr.Message() != want {
		t.Errorf("message %q, want %q", appErr.Message(), want)
	}
	if len(h.queues) != 0 {
		t.Errorf("Execute ran %d times for invalid params", len(h.queues))
	}
	pub := h.published(t)
	if pub.Status != jobs.StatusFailed || pub.ErrorType != jobs.ErrInvalidParams || !strings.Contains(pub.Error, "size") {
		t.Errorf("published %+v, want the failure with its error type", pub)
	}
}

func TestUnknownJobTypeIsInvalidParams(t *testing.T) {
	h := newHarness(t, 0)
	req := request("cpu", `{}`)
	req.JobType = "sorting"
	_, err := h.run(t, req)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrInvalidParams || !strings.Contains(appErr.Message(), "known types are") {
		t.Fatalf("err = %v", err)
	}
}

func TestPublishIsRetried(t *testing.T) {
	h := newHarness(t, 0)
	h.broker.failures = 2
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	if _, err := h.run(t, request("cpu", `{}`)); err != nil {
		t.Fatal(err)
	}
	if h.broker.calls != 3 {
		t.Errorf("broker called %d times, want 3 (two failures, then success)", h.broker.calls)
	}
	h.published(t)
}

func TestExecuteRetriedAfterWorkerLoss(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{},
		temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_HEARTBEAT, nil)).Once()
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("cpu", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.queues) != 2 || res.Status != jobs.StatusCompleted {
		t.Errorf("%d attempts, result %+v: want a retry that completes", len(h.queues), res)
	}
}

func TestResourceExhaustedIsNotRetried(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{},
		temporal.NewNonRetryableApplicationError("job needs 12.0 GiB of memory, this CPU worker may use 4.0 GiB", jobs.ErrResourceExhausted, nil)).Once()
	_, err := h.run(t, request("cpu", `{}`))
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrResourceExhausted {
		t.Fatalf("err = %v", err)
	}
	if len(h.queues) != 1 {
		t.Errorf("%d attempts, want 1", len(h.queues))
	}
}

func TestCancelStopsTheJobAndPublishesCanceled(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(func(ctx context.Context, _ workflows.ExecuteInput) (jobs.Result, error) {
		<-ctx.Done() // a kernel that only stops when canceled
		return jobs.Result{}, ctx.Err()
	}).Once()
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, time.Second)
	_, err := h.run(t, request("cpu", `{}`))
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	if pub := h.published(t); pub.Status != jobs.StatusCanceled || pub.ErrorType != jobs.ErrCanceled {
		t.Errorf("published %+v, want status canceled", pub)
	}
}

func TestLabelComesFromTheHardwareThatRanIt(t *testing.T) {
	// A misconfigured CPU worker polling gpu_queue: the result must say CPU, flagged.
	h := newHarness(t, 1)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("gpu", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if res.WorkerType != "cpu" || res.Fallback != "a CPU worker took the job from gpu_queue" {
		t.Errorf("result %+v", res)
	}
}

func TestAutoChoosesCPUWithoutCallingItAFallback(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("", `{"size": 8}`)) // auto is the default
	if err != nil {
		t.Fatal(err)
	}
	if res.RequestedDevice != "auto" || res.Fallback != "" || res.ScheduleReason != "auto: no GPU worker polling gpu_queue" {
		t.Errorf("result %+v", res)
	}
}

func TestPriorityAndTenantReachTheActivity(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	req := request("cpu", `{}`)
	req.Priority, req.Tenant = 1, "team-a"
	res, err := h.run(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.options) != 1 || h.options[0].Priority.PriorityKey != 1 || h.options[0].Priority.FairnessKey != "team-a" {
		t.Fatalf("Execute scheduled with %+v, want priority key 1 and fairness key team-a", h.options)
	}
	if res.Priority != 1 || res.Tenant != "team-a" {
		t.Errorf("result priority %d tenant %q", res.Priority, res.Tenant)
	}
	// The default priority is 3, the middle of 1..5.
	h2 := newHarness(t, 0)
	h2.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	if _, err := h2.run(t, request("cpu", `{}`)); err != nil {
		t.Fatal(err)
	}
	if got := h2.options[0].Priority.PriorityKey; got != 3 {
		t.Errorf("default priority key %d, want 3", got)
	}
}

func TestTimeoutsDerivedFromTheEstimate(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	// 2·8000³·1000 FLOP at the default 20 GFLOP/s is 51200 s: 20x that.
	if _, err := h.run(t, request("cpu", `{"size": 8000, "iterations": 1000}`)); err != nil {
		t.Fatal(err)
	}
	o := h.options[0]
	if want := 20 * 51200 * time.Second; o.StartToCloseTimeout < want*99/100 || o.StartToCloseTimeout > want*101/100 {
		t.Errorf("start-to-close %s, want about %s", o.StartToCloseTimeout, want)
	}
	if o.HeartbeatTimeout != 10*time.Second || o.ScheduleToStartTimeout != 0 {
		t.Errorf("heartbeat %s, schedule-to-start %s: want 10s and none for a CPU job", o.HeartbeatTimeout, o.ScheduleToStartTimeout)
	}

	// A small job gets the 5-minute floor; --timeout overrides it.
	for _, tc := range []struct {
		timeout, want time.Duration
	}{{0, 5 * time.Minute}, {42 * time.Second, 42 * time.Second}} {
		h := newHarness(t, 0)
		h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
		req := request("cpu", `{"size": 8}`)
		req.Timeout = tc.timeout
		if _, err := h.run(t, req); err != nil {
			t.Fatal(err)
		}
		if got := h.options[0].StartToCloseTimeout; got != tc.want {
			t.Errorf("--timeout %s: start-to-close %s, want %s", tc.timeout, got, tc.want)
		}
	}
}

func TestRequireGPUWaitsOnlyOnTheGPUQueue(t *testing.T) {
	h := newHarness(t, 0)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("gpu"), nil).Once()
	if _, err := h.run(t, request("gpu!", `{}`)); err != nil {
		t.Fatal(err)
	}
	if o := h.options[0]; o.TaskQueue != jobs.GPUQueue || o.ScheduleToStartTimeout != 10*time.Minute {
		t.Errorf("gpu! scheduled on %s with schedule-to-start %s, want gpu_queue and 10m", o.TaskQueue, o.ScheduleToStartTimeout)
	}
}

// A broker that is away much longer than the quick publish window: the completed job is still
// published, exactly once, and reported completed (it was failed with wrapError before).
func TestPublishOutlastsALongBrokerOutage(t *testing.T) {
	h := newHarness(t, 0)
	h.broker.failures = 40 // with retries capped at one every 15 s: about ten minutes of outage
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("cpu", `{}`))
	if err != nil {
		t.Fatalf("a broker outage failed a completed job: %v", err)
	}
	if res.Status != jobs.StatusCompleted || h.broker.calls != 41 {
		t.Errorf("status %s after %d publish attempts, want completed after 41", res.Status, h.broker.calls)
	}
	if pub := h.published(t); pub.Status != jobs.StatusCompleted {
		t.Errorf("published %+v", pub)
	}
}

// While the broker is away, the job's state says so.
func TestStateSaysTheResultWaitsForTheBroker(t *testing.T) {
	h := newHarness(t, 0)
	h.broker.failures = 1000
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	var state workflows.JobState
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(workflows.StateQuery)
		if err == nil {
			err = v.Get(&state)
		}
		if err != nil {
			t.Error(err)
		}
		h.broker.mu.Lock()
		h.broker.failures = 0 // the broker is back
		h.broker.mu.Unlock()
	}, time.Hour)
	if _, err := h.run(t, request("cpu", `{}`)); err != nil {
		t.Fatal(err)
	}
	if state.Stage != workflows.StageWaitingBroker || !strings.Contains(state.Detail, "connection refused") {
		t.Errorf("state after an hour of outage %+v, want %s with the broker's error", state, workflows.StageWaitingBroker)
	}
	h.published(t)
}

// A job that no worker has the memory for now waits and is offered again, instead of failing.
func TestResourceBusyWaitsAndIsOfferedAgain(t *testing.T) {
	h := newHarness(t, 0)
	busy := temporal.NewNonRetryableApplicationError("waiting for memory: needs 12.0 GiB", jobs.ErrResourceBusy, nil)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{}, busy).Times(6)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("cpu", `{}`))
	if err != nil || res.Status != jobs.StatusCompleted {
		t.Fatalf("result %+v, err %v: want it completed after waiting", res, err)
	}
	if len(h.queues) != 7 {
		t.Errorf("%d offers, want 7", len(h.queues))
	}
}

// A start by another client whose input is not a job request still ends with a published
// failed result that names what could not be read.
func TestUndecodableInputPublishesAFailedResult(t *testing.T) {
	for _, tt := range []struct{ input, want string }{
		{`"garbage"`, "got a JSON string"},
		{`42`, "got a JSON number"},
		{`{"job_type": "matrix_multiply", "submit_time": "yesterday"}`, `submit_time: "yesterday" is not an RFC 3339 time`},
		{`{"job_type": 7}`, "job_type: want string, got a JSON number"},
	} {
		h := newHarness(t, 0)
		_, err := h.runInput(t, json.RawMessage(tt.input))
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != jobs.ErrInvalidParams || !strings.Contains(appErr.Message(), tt.want) {
			t.Errorf("input %s: err %v, want InvalidParams saying %q", tt.input, err, tt.want)
			continue
		}
		pub := h.published(t)
		if pub.Status != jobs.StatusFailed || pub.JobID != "job-0123456789ab" || pub.JobType == "" || !strings.Contains(pub.Error, tt.want) {
			t.Errorf("input %s: published %+v", tt.input, pub)
		}
	}
}

// A failed job says which worker it failed on: from the error's details, or from the last
// heartbeat when the worker went silent.
func TestFailedJobKeepsTheWorkerThatRanIt(t *testing.T) {
	who := jobs.Heartbeat{WorkerID: "gpu-7", WorkerType: "gpu", Device: "NVIDIA H200"}
	panicked := temporal.NewApplicationErrorWithOptions("matrix_multiply kernel crashed", jobs.ErrKernelPanic,
		temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{who}})
	h := newHarness(t, 1)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{}, panicked).Once()
	if _, err := h.run(t, request("gpu!", `{}`)); err == nil {
		t.Fatal("a kernel panic completed the job")
	}
	if pub := h.published(t); pub.WorkerType != "gpu" || pub.WorkerID != "gpu-7" || pub.Device != "NVIDIA H200" || pub.ErrorType != jobs.ErrKernelPanic {
		t.Errorf("published %+v, want the GPU worker's failure", pub)
	}
}

// A GPU worker without a GPU implementation of the kind hands a GPU-preferring job to a CPU.
func TestNoGPUImplementationFallsBackToCPU(t *testing.T) {
	h := newHarness(t, 1)
	noImpl := temporal.NewNonRetryableApplicationError("job type matrix_multiply has no gpu implementation on this worker", jobs.ErrNoImplementation, nil)
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(jobs.Result{}, noImpl).Once()
	h.env.OnActivity(workflows.ExecuteActivity, anyCtx, anyArg).Return(ran("cpu"), nil).Once()
	res, err := h.run(t, request("gpu", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(h.queues, ","); got != "gpu_queue,cpu_queue" || res.Fallback != "the GPU worker has no GPU implementation of this job type" {
		t.Errorf("queues %s, fallback %q", got, res.Fallback)
	}
}

// The workflow's error carries the published result, so clients show what the monitor stored.
func TestFailureCarriesThePublishedResult(t *testing.T) {
	h := newHarness(t, 0)
	_, err := h.run(t, request("cpu", `{"size": -1}`))
	var appErr *temporal.ApplicationError
	var res jobs.Result
	if !errors.As(err, &appErr) || appErr.Details(&res) != nil {
		t.Fatalf("err %v: no result in its details", err)
	}
	if pub := h.published(t); res.JobID != pub.JobID || res.Error != pub.Error || !res.EndTime.Equal(pub.EndTime) || res.SubmitTime.IsZero() {
		t.Errorf("details %+v, published %+v", res, pub)
	}
}

// Results carry only the documented error types and kind-shaped job types, which the monitor
// checks: anything else would be dead-lettered there.
func TestFailedResultsNameDocumentedTypes(t *testing.T) {
	if typ, msg := workflows.Classify(temporal.NewApplicationError("disk full", "MyKindError")); typ != jobs.ErrKernel || msg != "MyKindError: disk full" {
		t.Errorf("Classify of a foreign type: %s %q", typ, msg)
	}
	h := newHarness(t, 0)
	req := request("cpu", `{}`)
	req.JobType = "Not A Kind!"
	if _, err := h.run(t, req); err == nil {
		t.Fatal("an invalid job type was accepted")
	}
	if pub := h.published(t); pub.JobType != "unknown" || !strings.Contains(pub.Error, `"Not A Kind!"`) {
		t.Errorf("published %+v", pub)
	}
}
