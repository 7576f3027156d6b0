package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// TestRecordHistories writes real JobWorkflow histories for the replay test in workflows/
// (GPUJOBS_RECORD_HISTORIES=$PWD/workflows/testdata make test-e2e, or go test -run this): a
// completed job, invalid params, a canceled job, a GPU fallback, and a result published after a
// broker outage. After a change to the workflow, the committed histories must still replay; new
// behaviour gets new histories recorded beside them.
func TestRecordHistories(t *testing.T) {
	dir := os.Getenv("GPUJOBS_RECORD_HISTORIES")
	if dir == "" {
		t.Skip("set GPUJOBS_RECORD_HISTORIES to a directory to record JobWorkflow histories")
	}
	b := testutil.StartBroker(t)
	e := env.isolated(t, b.URL)
	e.startWorker(t, "scheduler", "sched-h")
	e.startWorker(t, "cpu", "cpu-h")
	c := e.dial(t)
	start := func(input any) string {
		id := jobs.NewJobID()
		if _, err := c.ExecuteWorkflow(ctxTimeout(t, 10*time.Second), client.StartWorkflowOptions{ID: id, TaskQueue: jobs.JobQueue,
			TypedSearchAttributes: jobclient.SearchAttributes(jobs.Request{JobType: "vector_addition", Device: "cpu"})}, workflows.JobWorkflowName, input); err != nil {
			t.Fatal(err)
		}
		return id
	}
	request := func(device, params string) jobs.Request {
		return jobs.Request{JobType: "vector_addition", Params: json.RawMessage(params), Device: device, SubmitTime: time.Now().UTC()}
	}
	wait := func(id string) {
		if _, err := jobclient.Await(ctxTimeout(t, 2*time.Minute), c, id); err != nil {
			t.Fatal(err)
		}
	}
	record := func(name, id string) {
		wait(id)
		it := c.GetWorkflowHistory(ctxTimeout(t, time.Minute), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var h historypb.History
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, ev)
		}
		out, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s: %d events", name, len(h.Events))
	}

	record("completed", start(request("cpu", `{"size": 1000, "iterations": 2}`)))
	record("invalid_params", start(request("cpu", `{"size": -1}`)))
	record("gpu_fallback", start(request("gpu", `{"size": 1000, "iterations": 2}`)))

	long := start(request("cpu", `{"size": 10000000, "iterations": 1000000}`))
	testutil.WaitFor(t, "the long job to run", time.Minute, func() bool {
		st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, long)
		return err == nil && st.Activity != nil && st.Activity.State == "started"
	})
	if err := jobclient.Cancel(ctxTimeout(t, 10*time.Second), c, long); err != nil {
		t.Fatal(err)
	}
	record("canceled", long)

	b.Stop(t)
	outage := start(request("cpu", `{"size": 1000, "iterations": 1}`))
	testutil.WaitFor(t, "the result to wait for the broker", time.Minute, func() bool {
		st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, outage)
		return err == nil && st.Stage != nil && st.Stage.Stage == workflows.StageWaitingBroker
	})
	b.Start(t)
	record("published_after_outage", outage)
}
