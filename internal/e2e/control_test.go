package e2e

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// submitAll builds and submits jobs through the starter's own code path.
func submitAll(t testing.TB, c client.Client, specs []jobclient.Spec) []jobs.Request {
	t.Helper()
	reqs := make([]jobs.Request, len(specs))
	for i, s := range specs {
		r, err := jobclient.Build(s, kernelsRegistry())
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = r
	}
	for _, err := range jobclient.SubmitAll(ctxTimeout(t, time.Minute), c, reqs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reqs
}

// awaitAll returns the results of reqs, in order.
func awaitAll(t testing.TB, c client.Client, reqs []jobs.Request) []jobs.Result {
	t.Helper()
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.JobID
	}
	out, err := jobclient.AwaitAll(ctxTimeout(t, 3*time.Minute), c, ids)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitBacklog waits until cpu_queue holds at least n tasks waiting for a worker.
func waitBacklog(t *testing.T, c client.Client, n int64) {
	t.Helper()
	insp := jobclient.TemporalInspector{Client: c, Namespace: "default"}
	testutil.WaitFor(t, "the CPU backlog to fill", 2*time.Minute, func() bool {
		st, err := insp.Inspect(ctxTimeout(t, 5*time.Second), jobs.CPUQueue)
		return err == nil && st.Backlog >= n
	})
}

func TestCancelStopsARunningKernel(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-c1")
	e.startWorker(t, "cpu", "cpu-c1")
	c := e.dial(t)
	req := submitAll(t, c, []jobclient.Spec{{JobType: "matrix_multiply", Params: `{"size": 512, "iterations": 100000}`, Device: "cpu"}})[0]
	testutil.WaitFor(t, "the kernel to report progress", 30*time.Second, func() bool {
		st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, req.JobID)
		return err == nil && st.Activity != nil && st.Activity.Progress != nil && st.Activity.Progress.Iteration > 0
	})
	out, stderr, code := e.starter(t, "cancel", req.JobID, "--wait")
	if code != 0 || !strings.Contains(out, "cancel requested: "+req.JobID) || !strings.Contains(out, "canceled") {
		t.Fatalf("starter cancel: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if pub := e.resultsOf(t, req.JobID, 10*time.Second)[0]; pub.Status != jobs.StatusCanceled {
		t.Errorf("published status %q, want canceled", pub.Status)
	}
	// The worker runs one job at a time: the next job completing proves the kernel stopped
	// (100000 iterations would have taken many minutes).
	r := e.submitJSON(t, "vector_addition", "--size", "100", "--iterations", "1", "--cpu")
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-c1" {
		t.Errorf("next job %+v", r)
	}
}

func TestHighPriorityJobsOvertakeABacklog(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-p1")
	c := e.dial(t)
	var specs []jobclient.Spec
	for range 8 {
		specs = append(specs, jobclient.Spec{JobType: "vector_addition", Params: `{"size": 1000, "iterations": 1}`, Device: "cpu", Priority: 5})
	}
	low := submitAll(t, c, specs)
	waitBacklog(t, c, int64(len(low)))
	urgent := specs[0]
	urgent.Priority = 1
	high := submitAll(t, c, []jobclient.Spec{urgent, urgent, urgent})
	waitBacklog(t, c, int64(len(low)+len(high)))
	e.startWorker(t, "cpu", "cpu-p1") // one slot: jobs start one at a time, in dispatch order

	all := awaitAll(t, c, append(append([]jobs.Request{}, low...), high...))
	sort.Slice(all, func(i, j int) bool { return all[i].StartTime.Before(all[j].StartTime) })
	var order []int
	for _, r := range all {
		order = append(order, r.Priority)
	}
	t.Logf("priorities in start order: %v", order)
	for i, p := range order[:len(high)] {
		if p != 1 {
			t.Errorf("job %d to start had priority %d: the 3 priority-1 jobs should start before the 8 priority-5 jobs queued earlier (order %v)", i+1, p, order)
		}
	}
}

func TestFloodingTenantDoesNotStarveAnother(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-f1")
	c := e.dial(t)
	job := func(tenant string) jobclient.Spec {
		return jobclient.Spec{JobType: "vector_addition", Params: `{"size": 1000, "iterations": 1}`, Device: "cpu", Tenant: tenant}
	}
	var flood []jobclient.Spec
	for range 200 {
		flood = append(flood, job("tenant-a"))
	}
	a := submitAll(t, c, flood)
	waitBacklog(t, c, 200)
	b := submitAll(t, c, []jobclient.Spec{job("tenant-b"), job("tenant-b"), job("tenant-b"), job("tenant-b"), job("tenant-b")})
	waitBacklog(t, c, 205)
	e.startWorker(t, "cpu", "cpu-f1")

	all := awaitAll(t, c, append(append([]jobs.Request{}, a...), b...))
	sort.Slice(all, func(i, j int) bool { return all[i].StartTime.Before(all[j].StartTime) })
	last := 0
	for i, r := range all {
		if r.Tenant == "tenant-b" {
			last = i + 1
		}
	}
	t.Logf("tenant-b's 5 jobs were all started by dispatch %d of 205", last)
	if last > 20 {
		t.Errorf("tenant-b's last job started at dispatch %d of 205: a tenant holding 200 queued jobs starved it", last)
	}
}

func TestListAndStatusUseVisibility(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-l1")
	e.startWorker(t, "cpu", "cpu-l1")
	c := e.dial(t)
	tenant := "list-" + testutil.RandomHex(3)
	reqs := submitAll(t, c, []jobclient.Spec{
		{JobType: "vector_addition", Params: `{"size": 100}`, Device: "cpu", Tenant: tenant},
		{JobType: "vector_addition", Params: `{"size": 100}`, Device: "cpu", Tenant: tenant, Priority: 2},
		{JobType: "matrix_multiply", Params: `{"size": 16}`, Device: "cpu", Tenant: tenant},
	})
	awaitAll(t, c, reqs)

	var listed []jobclient.Summary
	testutil.WaitFor(t, "visibility to list the completed jobs", 30*time.Second, func() bool {
		out, _, code := e.starter(t, "list", "--tenant", tenant, "--type", "vector_addition", "--status", "completed", "--json")
		listed = nil
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var s jobclient.Summary
			if json.Unmarshal([]byte(line), &s) == nil && s.JobID != "" {
				listed = append(listed, s)
			}
		}
		return code == 0 && len(listed) == 2
	})
	for _, s := range listed {
		if s.JobType != "vector_addition" || s.Tenant != tenant || s.State != "completed" || s.Device != "cpu" || s.WorkerType != "cpu" {
			t.Errorf("listed %+v", s)
		}
	}
	if listed[0].Priority+listed[1].Priority != 5 { // priorities 2 and 3 (the default)
		t.Errorf("priorities %d and %d, want 2 and 3", listed[0].Priority, listed[1].Priority)
	}

	out, _, code := e.starter(t, "status", reqs[2].JobID)
	for _, want := range []string{reqs[2].JobID + "  matrix_multiply  completed", "device:    cpu → cpu", "tenant: " + tenant, "result:    completed on cpu", "web UI:    http://"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("starter status: exit %d, output %q lacks %q", code, out, want)
		}
	}
	if _, stderr, code := e.starter(t, "status", "job-000000000000"); code == 0 || !strings.Contains(stderr, "no job job-000000000000") {
		t.Errorf("status of an unknown job: exit %d, %q", code, stderr)
	}
	if _, stderr, code := e.starter(t, "list", "--status", "sleeping"); code == 0 || !strings.Contains(stderr, `invalid status "sleeping"`) {
		t.Errorf("list with a bad status: exit %d, %q", code, stderr)
	}
}

func TestRequireGPUWithoutGPUWorkerTimesOutClearly(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-g1", "--require-gpu-wait", "3s")
	e.startWorker(t, "cpu", "cpu-g1")                                        // a CPU worker is up, but gpu! must not use it
	r := e.submitJSON(t, "matrix_multiply", "--size", "32", "--require-gpu") // the same as --device gpu!
	if r.Status != jobs.StatusFailed || r.ErrorType != jobs.ErrNoWorker || !strings.Contains(r.Error, "no GPU worker started the job within 3s") {
		t.Errorf("result %+v, want a clear NoWorker failure", r)
	}
	if pub := e.resultsOf(t, r.JobID, 10*time.Second)[0]; pub.WorkerType != "" || pub.Status != jobs.StatusFailed {
		t.Errorf("published %+v: the job must not have run anywhere", pub)
	}
}

func TestBatchWatchAndCompareThroughTheCLI(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-w1")
	e.startWorker(t, "cpu", "cpu-w1", "--concurrency", "2")

	// submit --count N --wait --json: one JSON result per job.
	out, stderr, code := e.starter(t, "submit", "vector_addition", "--size", "1000", "--iterations", "2", "--cpu", "--count", "3", "--wait", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("submit --count 3: exit %d, %d lines, stderr %q", code, len(lines), stderr)
	}
	var first jobs.Result
	for _, l := range lines {
		var r jobs.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Status != jobs.StatusCompleted {
			t.Errorf("batch result %q: %v", l, err)
		}
		first = r
	}

	// watch waits for the jobs and, off a terminal, prints only the result table.
	out, stderr, code = e.starter(t, "watch", first.JobID)
	if code != 0 || !strings.Contains(out, first.JobID) || !strings.Contains(out, "completed") {
		t.Errorf("watch: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	// compare needs a GPU worker and says so plainly when none is up.
	_, stderr, code = e.starter(t, "compare", "matrix_multiply", "--size", "32")
	if code == 0 || !strings.Contains(stderr, "no GPU worker is polling gpu_queue") {
		t.Errorf("compare without a GPU worker: exit %d, stderr %q", code, stderr)
	}
}
