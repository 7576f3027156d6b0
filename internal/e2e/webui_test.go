package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/converter"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// The Web UI tells each job's story: a static summary (kind, params, device), current details
// kept up to date with the worker and the progress, and summaries on the activities. They are
// read back here through Temporal's API, as the Web UI reads them.
func TestTheWebUITellsTheJobsStory(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-ui")
	e.startWorker(t, "cpu", "cpu-ui")
	c := e.dial(t)
	req := submitAll(t, c, []jobclient.Spec{{JobType: "matrix_multiply", Params: `{"size": 512, "iterations": 100000}`, Device: "cpu"}})[0]

	desc, err := c.DescribeWorkflowExecution(ctxTimeout(t, 10*time.Second), req.JobID, "")
	if err != nil {
		t.Fatal(err)
	}
	var summary string
	if err := converter.GetDefaultDataConverter().FromPayload(desc.GetExecutionConfig().GetUserMetadata().GetSummary(), &summary); err != nil ||
		!strings.Contains(summary, "matrix_multiply") || !strings.Contains(summary, "size=512") || !strings.Contains(summary, "device cpu") {
		t.Errorf("static summary %q (%v)", summary, err)
	}
	details := func() string {
		v, err := c.QueryWorkflow(ctxTimeout(t, 5*time.Second), req.JobID, "", "__temporal_workflow_metadata")
		if err != nil {
			return ""
		}
		var md sdkpb.WorkflowMetadata
		if v.Get(&md) != nil {
			return ""
		}
		return md.GetCurrentDetails()
	}
	testutil.WaitFor(t, "the current details to name the worker and the progress", time.Minute, func() bool {
		d := details()
		return strings.Contains(d, "running on **cpu-ui**") && strings.Contains(d, "step ")
	})
	t.Logf("current details while it runs: %q", details())
	if err := jobclient.Cancel(ctxTimeout(t, 10*time.Second), c, req.JobID); err != nil {
		t.Fatal(err)
	}
	if _, err := jobclient.Await(ctxTimeout(t, 2*time.Minute), c, req.JobID); err != nil {
		t.Fatal(err)
	}
	if d := details(); !strings.Contains(d, "done") {
		t.Errorf("current details once it ended: %q", d)
	}

	var summaries []string
	it := c.GetWorkflowHistory(ctxTimeout(t, 30*time.Second), req.JobID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if p := ev.GetUserMetadata().GetSummary(); p != nil {
			var s string
			if converter.GetDefaultDataConverter().FromPayload(p, &s) == nil {
				summaries = append(summaries, s)
			}
		}
	}
	all := strings.Join(summaries, " | ")
	for _, want := range []string{"validate matrix_multiply and choose a device (policy cpu)", "run matrix_multiply on a CPU worker (cpu_queue)"} {
		if !strings.Contains(all, want) {
			t.Errorf("activity summaries %q lack %q", all, want)
		}
	}
}

// A job waiting for a worker says where it stands: its position in the queue and its predicted
// start and end, in status, list, the JSON and the monitor's API (which asks the scheduler
// worker); each result keeps the predictions made when the job was placed.
func TestQueuedJobsSayWhenTheyStart(t *testing.T) {
	e := env
	health := testutil.FreeAddr(t)
	e.startWorker(t, "scheduler", "sched-q", "--health-addr", health)
	api := e.startMonitor(t, "--scheduler-url", "http://"+health)
	c := e.dial(t)
	var specs []jobclient.Spec
	for range 3 {
		specs = append(specs, jobclient.Spec{JobType: "matrix_multiply", Params: `{"size": 128, "iterations": 20}`, Device: "cpu"})
	}
	reqs := submitAll(t, c, specs)
	// Submitted together, they queue in some order: together they hold positions 1, 2 and 3.
	positions := func() map[int]string {
		got := map[int]string{}
		for _, r := range reqs {
			out, _, _ := e.starter(t, "status", r.JobID, "--json")
			var st jobclient.Status
			if json.Unmarshal([]byte(out), &st) == nil && st.Prediction != nil && !st.Prediction.PredictedStart.IsZero() {
				got[st.Prediction.Position] = r.JobID
			}
		}
		return got
	}
	testutil.WaitFor(t, "the three queued jobs to be placed 1, 2 and 3", 30*time.Second, func() bool {
		p := positions()
		return p[1] != "" && p[2] != "" && p[3] != ""
	})
	third := positions()[3]
	out, _, _ := e.starter(t, "status", third)
	t.Logf("status of a queued job:\n%s", out)
	if !strings.Contains(out, "position 3 of 3 waiting on cpu_queue") || !strings.Contains(out, "predicted start") {
		t.Errorf("status:\n%s", out)
	}
	// No CPU worker runs yet; one that a test before stopped may still count as polling for a
	// while (Temporal's poller list), and the short forms say which it is.
	want := "#3, starts ~"
	var st jobclient.Status
	if js, _, _ := e.starter(t, "status", third, "--json"); json.Unmarshal([]byte(js), &st) == nil && st.Prediction != nil && st.Prediction.Pollers == 0 {
		want = "#3, no worker polls cpu_queue"
	}
	list, _, _ := e.starter(t, "list", "--status", "running")
	if !strings.Contains(list, want) {
		t.Errorf("list does not show the queue (%q):\n%s", want, list)
	}
	// The monitor's API tells the same: the same job third of three on cpu_queue, each start
	// after the one before.
	var view monitor.QueueView
	if !getJSON(t, api+"/api/queue?queue=cpu_queue", &view) {
		t.Fatal("the monitor's /api/queue is unreadable")
	}
	t.Logf("monitor /api/queue: %+v", view.Jobs)
	mine := map[string]bool{}
	for _, r := range reqs {
		mine[r.JobID] = true
	}
	var order []jobs.Prediction
	for _, p := range view.Jobs {
		if mine[p.JobID] {
			order = append(order, p)
		}
	}
	if len(order) != 3 || order[2].JobID != third || order[2].Position != 3 || order[2].Waiting != 3 ||
		order[1].PredictedStart.Before(order[0].PredictedStart) || order[2].PredictedStart.Before(order[1].PredictedStart) {
		t.Errorf("the monitor's queue %+v, want the 3 jobs with %s third of 3", order, third)
	}
	var one monitor.QueueView
	if !getJSON(t, api+"/api/queue?job_id="+third, &one) || len(one.Jobs) != 1 || one.Jobs[0].Position != 3 {
		t.Errorf("/api/queue?job_id=%s: %+v", third, one.Jobs)
	}
	e.startWorker(t, "cpu", "cpu-q")
	for _, r := range awaitAll(t, c, reqs) {
		if r.Status != jobs.StatusCompleted || r.PredictedStart.IsZero() || r.PredictedEnd.Before(r.PredictedStart) {
			t.Errorf("%s: status %s, predicted %s..%s", r.JobID, r.Status, r.PredictedStart, r.PredictedEnd)
		}
	}
}
