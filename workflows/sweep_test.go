package workflows_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/temporalx"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// fakeJobs stands in for JobWorkflow as the sweep's child: it records what it was started with
// and how many ran at once, takes 10 (test-clock) minutes, and fails the jobs of a chosen size.
type fakeJobs struct {
	mu       sync.Mutex
	started  []jobs.Request
	ids      []string
	running  int
	peak     int
	failSize int
	canceled int
}

func (f *fakeJobs) run(ctx workflow.Context, req jobs.Request) (jobs.Result, error) {
	f.mu.Lock()
	f.started = append(f.started, req)
	f.ids = append(f.ids, workflow.GetInfo(ctx).WorkflowExecution.ID)
	f.running++
	f.peak = max(f.peak, f.running)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if err := workflow.Sleep(ctx, 10*time.Minute); err != nil {
		f.mu.Lock()
		f.canceled++
		f.mu.Unlock()
		return jobs.Result{}, temporal.NewCanceledError("job canceled")
	}
	var p struct{ Size int }
	json.Unmarshal(req.Params, &p) //nolint:errcheck
	if p.Size == f.failSize {
		return jobs.Result{}, temporal.NewNonRetryableApplicationError("out of memory", jobs.ErrResourceExhausted, nil)
	}
	return jobs.Result{JobID: req.JobID, JobType: req.JobType, Params: req.Params, Status: jobs.StatusCompleted, SweepID: req.SweepID,
		WorkerType: req.Device, ProcessingTime: float64(p.Size) / 1000}, nil
}

func sweepEnv(t *testing.T, f *fakeJobs) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(temporalx.Logger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))))
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "sweep-0123456789ab"})
	env.RegisterWorkflowWithOptions(workflows.SweepWorkflow, workflow.RegisterOptions{Name: workflows.SweepWorkflowName})
	env.RegisterWorkflowWithOptions(f.run, workflow.RegisterOptions{Name: workflows.JobWorkflowName})
	return env
}

func sweepRequest(parallel int, sizes ...int) jobs.SweepRequest {
	in := jobs.SweepRequest{SweepID: "sweep-0123456789ab", JobType: "matrix_multiply", Parallel: parallel}
	for _, size := range sizes {
		for _, device := range []string{"cpu", "gpu"} {
			in.Jobs = append(in.Jobs, jobs.Request{JobType: "matrix_multiply", Device: device, Params: json.RawMessage(fmt.Sprintf(`{"size":%d}`, size))})
		}
	}
	return in
}

func TestSweepRunsEveryPointAsAChildBoundedByParallel(t *testing.T) {
	f := &fakeJobs{failSize: 300}
	env := sweepEnv(t, f)
	env.ExecuteWorkflow(workflows.SweepWorkflowName, sweepRequest(3, 100, 200, 300, 400, 500))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res jobs.SweepResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(f.started) != 10 || f.peak != 3 {
		t.Errorf("%d children started, at most %d at once: want 10, at most 3", len(f.started), f.peak)
	}
	ids := map[string]bool{}
	for i, id := range f.ids {
		ids[id] = true
		if f.started[i].SweepID != "sweep-0123456789ab" || f.started[i].JobID != id {
			t.Errorf("child %s: request ID %q, sweep %q: want its workflow ID and the sweep's ID", id, f.started[i].JobID, f.started[i].SweepID)
		}
	}
	if res.Status != jobs.StatusCompleted || res.SweepID != "sweep-0123456789ab" || len(res.Results) != 10 {
		t.Fatalf("sweep result %+v", res)
	}
	for i, r := range res.Results {
		failed := i == 4 || i == 5 // size 300 on both devices
		want := fmt.Sprintf("sweep-0123456789ab-%02d", i+1)
		if failed != (r.Status == jobs.StatusFailed) || r.SweepID != res.SweepID || r.JobID != want || !ids[want] {
			t.Errorf("result %d: %+v", i, r)
		}
		if failed && (r.ErrorType != jobs.ErrResourceExhausted || r.Error != "out of memory" || r.RequestedDevice == "") {
			t.Errorf("failed job %d: %+v, want its error type, message and request", i, r)
		}
	}
	sum := jobs.SummarizeSweep(res.SweepID, res.Results)
	if sum.Completed != 8 || sum.Failed != 2 || len(sum.Points) != 5 || sum.Points[0].Speedup != 1 {
		t.Errorf("summary %+v", sum)
	}
}

func TestCancelingASweepCancelsItsJobsAndStartsNoMore(t *testing.T) {
	f := &fakeJobs{}
	env := sweepEnv(t, f)
	env.RegisterDelayedCallback(env.CancelWorkflow, 15*time.Minute) // the second pair is running
	env.ExecuteWorkflow(workflows.SweepWorkflowName, sweepRequest(2, 100, 200, 300, 400))
	var canceled *temporal.CanceledError
	if err := env.GetWorkflowError(); !errors.As(err, &canceled) {
		t.Fatalf("sweep ended with %v, want canceled", err)
	}
	if len(f.started) != 4 || f.canceled != 2 || f.running != 0 {
		t.Errorf("%d children started, %d canceled, %d still running: want 4 started (2 done, 2 canceled), none running, none of the last 4 started",
			len(f.started), f.canceled, f.running)
	}
}

func TestInvalidSweepFailsWithoutRetry(t *testing.T) {
	for _, in := range []jobs.SweepRequest{
		sweepRequest(-1, 100),
		sweepRequest(0),
		{SweepID: "x", JobType: "matrix_multiply", Jobs: []jobs.Request{{JobType: "vector_addition"}}},
	} {
		env := sweepEnv(t, &fakeJobs{})
		env.ExecuteWorkflow(workflows.SweepWorkflowName, in)
		var appErr *temporal.ApplicationError
		if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != jobs.ErrInvalidParams || !appErr.NonRetryable() {
			t.Errorf("%+v: error %v, want a non-retryable %s", in, err, jobs.ErrInvalidParams)
		}
	}
}

// Histories of real sweeps (recorded by internal/e2e's TestRecordSweepHistories: one that
// completed with two failed jobs, one canceled while its first job ran) must replay against the
// current code, so a change that would break running sweeps fails here.
func TestSweepHistoriesReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/sweeps/*.json")
	if err != nil || len(files) < 2 {
		t.Fatalf("recorded sweep histories: %v, %v", files, err)
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := worker.NewWorkflowReplayer()
		r.RegisterWorkflowWithOptions(workflows.SweepWorkflow, workflow.RegisterOptions{Name: workflows.SweepWorkflowName})
		// The sweep's ID is its workflow ID, and its jobs' IDs derive from it: replay with the
		// original, which the file is named after.
		id := "sweep-" + strings.TrimSuffix(filepath.Base(file), ".json")
		opts := worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id, RunID: "run"}}
		if err := r.ReplayWorkflowHistoryWithOptions(temporalx.Logger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))), h, opts); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
