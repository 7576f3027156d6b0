// Package activities holds the side effects of a job: scheduling it (asking Temporal which
// workers are polling), executing its kernel on a worker, publishing its result to RabbitMQ.
// Activities are methods on structs that hold their dependencies; the decisions they apply
// (which device, does it fit) are plain functions elsewhere (package scheduling, the runners).
package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Runner runs kernels on one kind of device. The CPU runner is CPURunner; the GPU runner lives in
// kernels/cuda behind the cuda build tag.
type Runner interface {
	Device() jobs.DeviceInfo
	// Fits returns an error wrapping jobs.ErrTooBig when a job of this size can never run here;
	// any other error is a fault of the worker, and the job is retried.
	Fits(w jobs.Work) error
	// Admit reserves what the job needs on this worker's host, or returns an error wrapping
	// jobs.ErrBusy when that is not free now. release gives it back.
	Admit(jobID string, w jobs.Work) (release func() error, err error)
	Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error)
}

// Router is a Runner that hands some kinds to another runner (a GPU worker's command jobs, which
// its CUDA runner does not run).
type Router interface {
	Route(kind string) Runner
}

// Executor is the Execute activity of a CPU or GPU worker.
type Executor struct {
	Kinds    *jobs.Kinds
	Runner   Runner
	WorkerID string
	Logger   *zap.Logger
	// HeartbeatEvery is how often progress is heartbeated while the kernel runs, which is also how
	// soon a cancel is heard; 0 means 500ms.
	HeartbeatEvery time.Duration
	// StallFloor is the least time without progress after which an attempt counts as stalled;
	// the limit is StallFactor times the estimated time of one step when that is longer.
	// Defaults 2m and 10.
	StallFloor  time.Duration
	StallFactor float64
	// StopGrace is how long a stalled kernel may take to stop once told to; default 30s.
	StopGrace time.Duration
	// Checkpoints opens a job's checkpoints (restored from an earlier attempt) for kinds that
	// keep them (jobs.Spec.Checkpoints); nil when the worker has no artifact store. done cleans up
	// when the attempt ends, deleting the saved checkpoint when the job completed.
	Checkpoints func(ctx context.Context, jobID string) (cp jobs.Checkpointer, done func(completed bool), err error)
	// Notify, when set, tells the job's workflow who runs it and how far it is: once when the
	// kernel starts and then at most every NotifyEvery (default 5s) while its progress moves.
	// The Web UI shows it in the workflow's current details.
	Notify      func(jobID string, hb jobs.Heartbeat)
	NotifyEvery time.Duration

	wedged atomic.Int64 // kernels that did not stop when told to, and still run
}

// errStalled is the cause of a kernel's cancellation when it made no progress for too long.
var errStalled = errors.New("no progress")

// bigJob is the size above which the worker returns the job's memory to the OS once it ended.
const bigJob = 64 << 20

// Wedged reports how many kernels did not stop when told to and still hold a CPU or GPU; the
// worker's /readyz fails while there is one.
func (e *Executor) Wedged() int64 { return e.wedged.Load() }

// Execute validates the job, runs its kernel and returns what it measured. Progress is
// heartbeated, a cancellation stops the kernel within one step (or one block of a long BLAS
// call), and Execute returns only once the kernel has stopped: the job's "canceled" is
// published when its slot is really free.
func (e *Executor) Execute(ctx context.Context, in workflows.ExecuteInput) (jobs.Result, error) {
	info := activity.GetInfo(ctx)
	log := e.Logger.With(zap.String("job_id", in.JobID), zap.String("job_type", in.JobType), zap.Int32("attempt", info.Attempt))
	runner := e.Runner
	if r, ok := runner.(Router); ok {
		runner = r.Route(in.JobType)
	}
	dev := runner.Device()
	who := jobs.Heartbeat{WorkerID: e.WorkerID, WorkerType: dev.WorkerType, Device: dev.Name}
	fail := func(msg, errType string, retryable bool, cause error) error {
		return temporal.NewApplicationErrorWithOptions(msg, errType, temporal.ApplicationErrorOptions{
			NonRetryable: !retryable, Cause: cause, Details: []any{who}})
	}

	spec, err := e.Kinds.Spec(in.JobType)
	if err != nil {
		return jobs.Result{}, fail(err.Error(), jobs.ErrInvalidParams, false, nil)
	}
	p, err := e.Kinds.Decode(in.JobType, in.Params)
	if err != nil {
		return jobs.Result{}, fail(err.Error(), jobs.ErrInvalidParams, false, nil)
	}
	w := p.Work()
	if err := runner.Fits(w); err != nil {
		if errors.Is(err, jobs.ErrTooBig) {
			return jobs.Result{}, fail(err.Error(), jobs.ErrResourceExhausted, false, nil)
		}
		return jobs.Result{}, fail(err.Error(), jobs.ErrKernel, true, nil)
	}
	release, err := runner.Admit(in.JobID, w)
	if err != nil {
		if errors.Is(err, jobs.ErrBusy) {
			log.Info("job does not fit now; it waits and is offered again", zap.Error(err))
			return jobs.Result{}, fail(fmt.Sprintf("waiting for memory: %v", err), jobs.ErrResourceBusy, false, nil)
		}
		return jobs.Result{}, fail(err.Error(), jobs.ErrKernel, true, nil)
	}
	defer func() {
		if err := release(); err != nil {
			log.Warn("memory reservation not released", zap.Error(err))
		}
		if w.MemBytes >= bigJob {
			debug.FreeOSMemory() // an idle worker must not sit on a finished job's gigabytes
		}
	}()

	start := time.Now()
	log.Info("job started", zap.String("device", dev.Name))
	kctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hb := newHeartbeater(ctx, who, e.HeartbeatEvery, e.stallLimit(in, w), func() { cancel(errStalled) })
	if e.Notify != nil {
		every := e.NotifyEvery
		if every <= 0 {
			every = 5 * time.Second
		}
		hb.notify(func(h jobs.Heartbeat) { e.Notify(in.JobID, h) }, every)
	}
	run := jobs.RunInfo{JobID: in.JobID, Attempt: int(info.Attempt), WorkerID: e.WorkerID}
	closeCheckpoints := func(bool) {}
	if spec.Checkpoints && e.Checkpoints != nil {
		cp, done, err := e.Checkpoints(ctx, in.JobID)
		if err != nil {
			return jobs.Result{}, fail(fmt.Sprintf("restore the checkpoint: %v", err), jobs.ErrKernel, true, nil)
		}
		run.Checkpoints, closeCheckpoints = cp, done
	}
	kctx = jobs.WithRunInfo(kctx, run)
	out, err := e.run(kctx, runner, p, hb.report, log)
	defer closeCheckpoints(err == nil) // a completed job's checkpoint is not needed again
	hb.stop()
	end := time.Now()
	if err != nil {
		switch {
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			log.Info("job canceled; the kernel has stopped", zap.Error(err))
			return jobs.Result{}, err // the SDK reports a canceled activity
		case errors.Is(context.Cause(kctx), errStalled):
			msg := fmt.Sprintf("%s made no progress for %s after step %d (its estimate is %s per step)",
				p.Kind(), roundDuration(hb.limit), hb.lastStep(), roundDuration(estimatePerStep(in, w)))
			log.Warn("job stalled", zap.String("reason", msg))
			return jobs.Result{}, fail(msg, jobs.ErrKernelStalled, true, nil)
		}
		log.Warn("job failed", zap.Error(err))
		var ae *temporal.ApplicationError
		var noImpl *jobs.NoImplementationError
		var failure *jobs.Failure
		switch {
		case errors.As(err, &failure):
			return jobs.Result{}, fail(failure.Message, failure.Type, failure.Retryable, nil)
		case errors.As(err, &noImpl):
			return jobs.Result{}, fail(err.Error(), jobs.ErrNoImplementation, false, nil)
		case errors.Is(err, jobs.ErrBusy):
			return jobs.Result{}, fail(fmt.Sprintf("waiting for memory: %v", err), jobs.ErrResourceBusy, false, nil)
		case errors.Is(err, jobs.ErrTooBig):
			return jobs.Result{}, fail(err.Error(), jobs.ErrResourceExhausted, false, nil)
		case errors.As(err, &ae):
			return jobs.Result{}, fail(ae.Message(), ae.Type(), !ae.NonRetryable(), nil)
		}
		return jobs.Result{}, fail(err.Error(), jobs.ErrKernel, true, nil)
	}
	res := jobs.Result{
		WorkerID:       e.WorkerID,
		WorkerType:     dev.WorkerType,
		Device:         dev.Name,
		ProcessingTime: out.ProcessingTime.Seconds(),
		SetupTime:      out.SetupTime.Seconds(),
		TransferTime:   out.TransferTime.Seconds(),
		QueueTime:      info.StartedTime.Sub(info.ScheduledTime).Seconds(),
		StartTime:      start,
		EndTime:        end,
		Metrics:        finite(out.Metrics, log),
		RateMetric:     spec.Headline.Name,
		RateUnit:       spec.Headline.Unit,
		BLAS:           out.BLAS,
		GEMM:           out.GEMM,
		Threads:        out.Threads,
		Attempt:        int(info.Attempt),
	}
	if dev.WorkerType == jobs.WorkerTypeGPU {
		res.ComputeCapability, res.DeviceMemory = dev.ComputeCapability, dev.Memory
	}
	if d := out.Device; d != nil { // a runner with several devices says which one ran the job
		res.Device, res.ComputeCapability, res.DeviceMemory = d.Name, d.ComputeCapability, d.Memory
	}
	withTelemetry(&res, out.Telemetry)
	res.Artifacts, res.ResumedFrom, res.ExitCode, res.GPUs = out.Artifacts, out.ResumedFrom, out.ExitCode, out.GPUs
	log.Info("job completed", zap.Float64("processing_time", res.ProcessingTime))
	return res, nil
}

// finite drops the metrics that are not finite numbers (a diverged training's NaN loss): they
// have no JSON form, and a result must always be publishable.
func finite(m map[string]float64, log *zap.Logger) map[string]float64 {
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			log.Warn("metric dropped: not a finite number", zap.String("metric", k), zap.Float64("value", v))
			delete(m, k)
		}
	}
	return m
}

// roundDuration keeps three significant figures or so, for messages.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Microsecond)
}

// estimatePerStep is the scheduler's estimate of one progress step on this device.
func estimatePerStep(in workflows.ExecuteInput, w jobs.Work) time.Duration {
	return time.Duration(in.EstimatedTime / float64(max(w.Steps, 1)) * float64(time.Second))
}

// stallLimit is how long the kernel may go without progress; 0 (never stalled) for a kind that
// reports no steps.
func (e *Executor) stallLimit(in workflows.ExecuteInput, w jobs.Work) time.Duration {
	if w.Steps <= 0 {
		return 0
	}
	floor, factor := e.StallFloor, e.StallFactor
	if floor <= 0 {
		floor = 2 * time.Minute
	}
	if factor <= 0 {
		factor = 10
	}
	return max(floor, time.Duration(factor*float64(estimatePerStep(in, w))))
}

// run calls the runner and turns a panic into a non-retryable error: a bad kernel fails its job
// and the worker goes on serving the others. A kernel stalled and told to stop gets StopGrace to
// do so; if it does not, its goroutine is abandoned (and counted in Wedged) so the job can run
// elsewhere.
func (e *Executor) run(ctx context.Context, runner Runner, p jobs.Params, report jobs.Reporter, log *zap.Logger) (jobs.Output, error) {
	type ran struct {
		out jobs.Output
		err error
	}
	done := make(chan ran, 1)
	go func() {
		var r ran
		defer func() {
			if v := recover(); v != nil {
				stack := debug.Stack()
				if s, ok := v.(interface{ Stack() []byte }); ok {
					stack = s.Stack()
				}
				log.Error("kernel panicked", zap.Any("panic", v), zap.ByteString("stack", stack))
				r.err = temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s kernel crashed: %v", p.Kind(), v), jobs.ErrKernelPanic, nil)
			}
			done <- r
		}()
		r.out, r.err = runner.Run(ctx, p, report)
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
	}
	if !errors.Is(context.Cause(ctx), errStalled) {
		r := <-done // canceled: the kernel stops within a step, and Execute returns only then
		return r.out, r.err
	}
	grace := e.StopGrace
	if grace <= 0 {
		grace = 30 * time.Second
	}
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(grace):
		e.wedged.Add(1)
		log.Error("stalled kernel did not stop; abandoning its goroutine", zap.Duration("grace", grace))
		go func() { <-done; e.wedged.Add(-1) }()
		return jobs.Output{}, context.Cause(ctx)
	}
}

// heartbeater records the latest progress, and who runs the job, as the activity's heartbeat
// once a tick. A step that runs longer than the heartbeat timeout still heartbeats, a
// cancellation is noticed while it runs, and the heartbeats go on after it until the kernel
// has stopped (they are sent with a context the cancellation does not end). Reports only
// store the progress: a job shorter than one tick costs no heartbeat RPC. When the progress
// stays still for limit, onStall is called once.
type heartbeater struct {
	limit time.Duration

	notifyFn    func(jobs.Heartbeat)
	notifyEvery time.Duration
	notified    time.Time
	notifiedAt  int // the step last notified
	// notifying counts the notices on their way. stop waits for them: a notice (a signal)
	// that reached the workflow after the activity's completion would fail the workflow task
	// that publishes the result (UnhandledCommand), and its retry would publish it again.
	notifying sync.WaitGroup

	mu       sync.Mutex
	last     jobs.Heartbeat
	progress time.Time // when the step last changed
	done     chan struct{}
	wg       sync.WaitGroup
}

func newHeartbeater(ctx context.Context, who jobs.Heartbeat, every, limit time.Duration, onStall func()) *heartbeater {
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	h := &heartbeater{limit: limit, last: who, progress: time.Now(), done: make(chan struct{})}
	hctx := context.WithoutCancel(ctx)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		stalled := false
		for {
			select {
			case <-h.done:
				return
			case now := <-t.C:
				h.mu.Lock()
				hb, since := h.last, now.Sub(h.progress)
				h.mu.Unlock()
				activity.RecordHeartbeat(hctx, hb)
				h.maybeNotify(now, hb)
				if limit > 0 && since > limit && !stalled {
					stalled = true
					onStall()
				}
			}
		}
	}()
	return h
}

func (h *heartbeater) report(p jobs.Progress) {
	h.mu.Lock()
	if p.Iteration != h.last.Iteration {
		h.progress = time.Now()
	}
	h.last.Progress = p
	h.mu.Unlock()
}

// notify sends the job's start now, and its progress at most every period afterwards.
func (h *heartbeater) notify(fn func(jobs.Heartbeat), period time.Duration) {
	h.mu.Lock()
	h.notifyFn, h.notifyEvery, h.notified, h.notifiedAt = fn, period, time.Now(), h.last.Iteration
	hb := h.last
	h.mu.Unlock()
	h.send(fn, hb)
}

func (h *heartbeater) send(fn func(jobs.Heartbeat), hb jobs.Heartbeat) {
	h.notifying.Add(1)
	go func() {
		defer h.notifying.Done()
		fn(hb)
	}()
}

func (h *heartbeater) maybeNotify(now time.Time, hb jobs.Heartbeat) {
	h.mu.Lock()
	fn := h.notifyFn
	due := fn != nil && hb.Iteration != h.notifiedAt && now.Sub(h.notified) >= h.notifyEvery
	if due {
		h.notified, h.notifiedAt = now, hb.Iteration
	}
	h.mu.Unlock()
	if due {
		h.send(fn, hb)
	}
}

func (h *heartbeater) lastStep() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last.Iteration
}

func (h *heartbeater) stop() {
	close(h.done)
	h.wg.Wait()
	h.notifying.Wait()
}
