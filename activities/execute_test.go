package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/workflows"
)

// fakeRunner runs a function as the kernel, on a "cpu" device.
type fakeRunner struct {
	fits  error
	admit error
	run   func(ctx context.Context, report jobs.Reporter) (jobs.Output, error)
}

func (f fakeRunner) Device() jobs.DeviceInfo {
	return jobs.DeviceInfo{WorkerType: jobs.WorkerTypeCPU, Name: "fake CPU", Memory: 1 << 30}
}
func (f fakeRunner) Fits(jobs.Work) error { return f.fits }
func (f fakeRunner) Admit(string, jobs.Work) (func() error, error) {
	return func() error { return nil }, f.admit
}
func (f fakeRunner) Run(ctx context.Context, _ jobs.Params, report jobs.Reporter) (jobs.Output, error) {
	return f.run(ctx, report)
}

func execute(t *testing.T, e *Executor, env *testsuite.TestActivityEnvironment) (jobs.Result, error) {
	t.Helper()
	e.Kinds, e.WorkerID, e.Logger = builtin.Kinds(), "cpu-9", zap.NewNop()
	env.RegisterActivity(e.Execute)
	v, err := env.ExecuteActivity(e.Execute, workflows.ExecuteInput{JobID: "job-0123456789ab", JobType: "vector_addition",
		Params: json.RawMessage(`{"size": 10, "iterations": 3}`), EstimatedTime: 0.001})
	var res jobs.Result
	if err == nil {
		err = v.Get(&res)
	}
	return res, err
}

func appError(t *testing.T, err error) (*temporal.ApplicationError, jobs.Heartbeat) {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("err %v is not an application error", err)
	}
	var who jobs.Heartbeat
	if err := ae.Details(&who); err != nil {
		t.Errorf("no worker in the error's details: %v", err)
	}
	return ae, who
}

func TestExecuteClassifiesWhatTheRunnerSays(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	for _, tt := range []struct {
		name      string
		r         fakeRunner
		errType   string
		retryable bool
	}{
		{"never fits", fakeRunner{fits: fmt.Errorf("%w: needs 40 GiB", jobs.ErrTooBig)}, jobs.ErrResourceExhausted, false},
		{"a fault of the worker", fakeRunner{fits: errors.New("no GPU")}, jobs.ErrKernel, true},
		{"busy now", fakeRunner{admit: fmt.Errorf("%w: 12 GiB reserved", jobs.ErrBusy)}, jobs.ErrResourceBusy, false},
		{"busy device", fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
			return jobs.Output{}, fmt.Errorf("%w: 1 GiB free", jobs.ErrBusy)
		}}, jobs.ErrResourceBusy, false},
		{"no implementation", fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
			return jobs.Output{}, &jobs.NoImplementationError{Kind: "vector_addition", Device: "gpu"}
		}}, jobs.ErrNoImplementation, false},
		{"kernel error", fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
			return jobs.Output{}, errors.New("CUDA_ERROR_ILLEGAL_ADDRESS")
		}}, jobs.ErrKernel, true},
		{"panic in a kernel goroutine", fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
			panic("index out of range")
		}}, jobs.ErrKernelPanic, false},
	} {
		_, err := execute(t, &Executor{Runner: tt.r}, s.NewTestActivityEnvironment())
		ae, who := appError(t, err)
		if ae.Type() != tt.errType || ae.NonRetryable() == tt.retryable {
			t.Errorf("%s: %s (non-retryable %v), want %s retryable %v", tt.name, ae.Type(), ae.NonRetryable(), tt.errType, tt.retryable)
		}
		if who.WorkerID != "cpu-9" || who.WorkerType != "cpu" {
			t.Errorf("%s: details %+v, want the worker", tt.name, who)
		}
	}
}

// A kernel that stops making progress is told to stop, and the attempt fails as stalled (to be
// retried elsewhere) instead of holding the worker until the start-to-close timeout.
func TestStalledKernelFailsTheAttempt(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	e := &Executor{HeartbeatEvery: 10 * time.Millisecond, StallFloor: 100 * time.Millisecond, Runner: fakeRunner{
		run: func(ctx context.Context, report jobs.Reporter) (jobs.Output, error) {
			report(jobs.Progress{Iteration: 1, Total: 3})
			<-ctx.Done() // hangs after step 1, until told to stop
			return jobs.Output{}, ctx.Err()
		}}}
	_, err := execute(t, e, env)
	ae, _ := appError(t, err)
	if ae.Type() != jobs.ErrKernelStalled || ae.NonRetryable() || !strings.Contains(ae.Message(), "no progress for 100ms after step 1") {
		t.Errorf("%s %q", ae.Type(), ae.Message())
	}
}

// A kernel that does not stop even when told to is abandoned after the grace, and counted.
func TestWedgedKernelIsAbandonedAndCounted(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	release := make(chan struct{})
	e := &Executor{HeartbeatEvery: 10 * time.Millisecond, StallFloor: 50 * time.Millisecond, StopGrace: 50 * time.Millisecond,
		Runner: fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
			<-release // ignores its context
			return jobs.Output{}, nil
		}}}
	_, err := execute(t, e, s.NewTestActivityEnvironment())
	if ae, _ := appError(t, err); ae.Type() != jobs.ErrKernelStalled || e.Wedged() != 1 {
		t.Errorf("%s, wedged %d: want stalled and one wedged kernel", ae.Type(), e.Wedged())
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for e.Wedged() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.Wedged() != 0 {
		t.Error("the wedged count did not fall once the kernel returned")
	}
}

// The notices to the workflow (signals) have all been delivered when Execute returns, even for
// a job that ends at once: a signal arriving after the activity's completion would fail the
// workflow task that publishes the result, and its retry would publish the result again.
func TestNoticesAreDeliveredBeforeTheActivityReturns(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	var mu sync.Mutex
	delivered := 0
	e := &Executor{Runner: fakeRunner{run: func(context.Context, jobs.Reporter) (jobs.Output, error) {
		return jobs.Output{}, nil // done before the first notice is on its way
	}}, Notify: func(string, jobs.Heartbeat) {
		time.Sleep(100 * time.Millisecond) // a slow signal RPC
		mu.Lock()
		delivered++
		mu.Unlock()
	}}
	if _, err := execute(t, e, env); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered != 1 {
		t.Errorf("%d notices delivered when Execute returned, want the start notice, 1", delivered)
	}
}
