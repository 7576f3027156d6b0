package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// sweepOutput is what `starter result SWEEP --json` prints.
type sweepOutput struct {
	Status  string            `json:"status"`
	Summary jobs.SweepSummary `json:"summary"`
	Results []jobs.Result     `json:"results"`
}

// A sweep of 8 points (4 sizes × CPU and GPU) through the starter: one parent workflow with a
// child per point, the table, every result published once with the sweep's ID, and the monitor
// grouping them into the sweep's curve.
func TestSweepOfEightPointsCompletesWithItsTable(t *testing.T) {
	e := env
	results := "e2e_sweep_results_" + testutil.RandomHex(4)
	t.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, results) })
	e.startProcess(t, "sched-s1", "worker", "--role", "scheduler", "--id", "sched-s1", "--temporal-address", e.address,
		"--rabbitmq-url", e.rabbitURL, "--result-queue", results)
	e.startWorker(t, "cpu", "cpu-s1")
	e.startWorker(t, "cpu", "cpu-s2")
	api := e.serveMonitor(t, results)
	c := e.dial(t)

	out, stderr, code := e.starter(t, "sweep", "matrix_multiply", "--size", "32,48,64,96", "--iterations", "2", "--device", "cpu,gpu", "--parallel", "3", "--wait")
	if code != 0 {
		t.Fatalf("starter sweep: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	t.Logf("starter sweep --wait printed:\n%s", out)
	head := strings.SplitN(out, "\n", 2)[0]
	var sweepID string
	if _, err := fmt.Sscanf(head, "sweep %s", &sweepID); err != nil {
		t.Fatalf("first line %q: %v", head, err)
	}
	sweepID = strings.TrimSuffix(sweepID, ":")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if head != "sweep "+sweepID+": matrix_multiply, 8 jobs: 8 completed, 0 failed, 0 canceled" || len(lines) != 6 ||
		!strings.HasPrefix(lines[1], "SIZE  CPU TIME") {
		t.Fatalf("table:\n%s", out)
	}
	for i, size := range []string{"32", "48", "64", "96"} {
		// No GPU worker here: each GPU point ran on a CPU, labelled; so no GPU time and no speedup.
		row := lines[2+i]
		f := strings.Fields(row)
		dashes := 0
		for _, w := range f {
			if w == "-" {
				dashes++
			}
		}
		if f[0] != size || !strings.Contains(row, " (2 runs)  ") || !strings.Contains(row, " GFLOP/s ") || dashes != 3 ||
			!strings.HasSuffix(row, "  1 fallback to CPU") {
			t.Errorf("row %q: want size %s, the CPU time of 2 runs and their rate, no GPU run, and the fallback", row, size)
		}
	}

	// The same sweep through `starter result --json`: counts, and every job once.
	out, stderr, code = e.starter(t, "result", sweepID, "--json")
	var so sweepOutput
	if err := json.Unmarshal([]byte(out), &so); code != 0 || err != nil {
		t.Fatalf("starter result %s: exit %d, %v\n%s%s", sweepID, code, err, out, stderr)
	}
	s := so.Summary
	if so.Status != jobs.StatusCompleted || s.Results != 8 || s.Completed != 8 || len(s.Points) != 4 || strings.Join(s.Varies, ",") != "size" {
		t.Errorf("summary %+v", s)
	}
	for _, p := range s.Points {
		if p.CPU == nil || p.CPU.Runs != 2 || p.Fallbacks != 1 || p.GPU != nil || !(p.CPU.MeanRate > 0) {
			t.Errorf("point %s: %+v", p.Label, p)
		}
	}

	out, _, code = e.starter(t, "status", sweepID)
	if code != 0 || !strings.Contains(out, sweepID+"  sweep  completed") || !strings.Contains(out, "matrix_multiply, 8: 8 completed, 0 failed, 0 canceled") {
		t.Errorf("starter status %s: exit %d\n%s", sweepID, code, out)
	}

	// In the Web UI the sweep is the parent of its 8 jobs.
	children, err := jobclient.SweepJobs(ctxTimeout(t, 10*time.Second), c, sweepID)
	if err != nil || len(children) != 8 {
		t.Fatalf("sweep's children %v (%v), want 8", children, err)
	}
	for i, id := range children {
		d, err := c.DescribeWorkflowExecution(ctxTimeout(t, 5*time.Second), id, "")
		if err != nil {
			t.Fatal(err)
		}
		info := d.GetWorkflowExecutionInfo()
		if id != jobs.SweepJobID(sweepID, i, 8) || info.GetParentExecution().GetWorkflowId() != sweepID || info.GetType().GetName() != workflows.JobWorkflowName ||
			info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			t.Errorf("child %s: parent %q, type %s, status %s", id, info.GetParentExecution().GetWorkflowId(), info.GetType().GetName(), info.GetStatus())
		}
	}

	// The monitor counts each once and groups them by the sweep's ID.
	var sweeps struct {
		Sweeps []jobs.SweepSummary `json:"sweeps"`
	}
	testutil.WaitFor(t, "the monitor to group the sweep's 8 results", 30*time.Second, func() bool {
		return getJSON(t, api+"/api/sweeps", &sweeps) && len(sweeps.Sweeps) == 1 && sweeps.Sweeps[0].Results == 8
	})
	st := totals(t, api)
	got := sweeps.Sweeps[0]
	lost := 8 - got.Completed
	t.Logf("sweep %s: submitted 8, completed %d, monitor counted %d (duplicates %d), lost %d", sweepID, s.Completed, st.Results, st.Duplicates, lost)
	if got.SweepID != sweepID || got.Completed != 8 || len(got.Points) != 4 || st.Results != 8 || lost != 0 {
		t.Errorf("monitor: sweep %+v, totals %+v", got, st)
	}
}

// Canceling a sweep cancels the jobs it runs (their kernels stop) and starts no more.
func TestCanceledSweepLeavesNoRunningChild(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-s2")
	e.startWorker(t, "cpu", "cpu-s3")
	c := e.dial(t)

	// 4 jobs of many minutes each, 2 at a time on one CPU worker: one runs, one waits for it.
	out, stderr, code := e.starter(t, "sweep", "matrix_multiply", "--size", "256,384", "--iterations", "100000", "--device", "cpu",
		"--repeat", "2", "--parallel", "2", "--json")
	var sub struct {
		SweepID string `json:"sweep_id"`
		Jobs    int    `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &sub); code != 0 || err != nil || sub.Jobs != 4 {
		t.Fatalf("starter sweep: exit %d %v\n%s%s", code, err, out, stderr)
	}
	testutil.WaitFor(t, "one of the sweep's first two jobs to report progress", time.Minute, func() bool {
		for i := range 2 {
			st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, jobs.SweepJobID(sub.SweepID, i, 4))
			if err == nil && st.Activity != nil && st.Activity.Progress != nil && st.Activity.Progress.Iteration > 0 {
				return true
			}
		}
		return false
	})
	out, stderr, code = e.starter(t, "cancel", sub.SweepID, "--wait")
	if code != 0 || !strings.Contains(out, "cancel requested: "+sub.SweepID) || !strings.Contains(out, "the sweep was canceled") {
		t.Fatalf("starter cancel: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("starter cancel --wait printed:\n%s", out)

	children, err := jobclient.SweepJobs(ctxTimeout(t, 10*time.Second), c, sub.SweepID)
	if err != nil {
		t.Fatal(err)
	}
	running, canceled := 0, 0
	for _, id := range children {
		d, err := c.DescribeWorkflowExecution(ctxTimeout(t, 5*time.Second), id, "")
		if err != nil {
			t.Fatal(err)
		}
		switch d.GetWorkflowExecutionInfo().GetStatus() {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			running++
		case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
			canceled++
		}
		if pub := e.resultsOf(t, id, 10*time.Second); len(pub) != 1 || pub[0].Status != jobs.StatusCanceled || pub[0].SweepID != sub.SweepID {
			t.Errorf("%s published %+v, want one canceled result with the sweep's ID", id, pub)
		}
	}
	t.Logf("sweep of 4 jobs canceled: %d started, %d canceled, %d still running, %d never started", len(children), canceled, running, 4-len(children))
	if len(children) != 2 || canceled != 2 || running != 0 {
		t.Errorf("want the 2 started jobs canceled, none running and the other 2 never started")
	}
	if out, _, code := e.starter(t, "status", sub.SweepID); code != 0 || !strings.Contains(out, sub.SweepID+"  sweep  canceled") {
		t.Errorf("starter status: exit %d\n%s", code, out)
	}
	d, err := c.DescribeWorkflowExecution(ctxTimeout(t, 5*time.Second), sub.SweepID, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("the sweep: %v %v, want canceled", d.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	// The worker runs one job at a time: the next job completing proves the kernel stopped.
	if r := e.submitJSON(t, "vector_addition", "--size", "100", "--iterations", "1", "--cpu"); r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-s3" {
		t.Errorf("next job %+v", r)
	}
}
