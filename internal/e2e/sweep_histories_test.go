package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// TestRecordSweepHistories writes real SweepWorkflow histories for the replay test in
// workflows/ into <GPUJOBS_RECORD_HISTORIES>/sweeps, as TestRecordHistories does for jobs: a sweep
// that completed with two failed jobs (gpu! without a GPU worker), and one canceled while its
// first job ran. Each history's sweep ID is sweep-<file name>, which the replay needs (the jobs'
// IDs derive from it).
func TestRecordSweepHistories(t *testing.T) {
	dir := os.Getenv("GPUJOBS_RECORD_HISTORIES")
	if dir == "" {
		t.Skip("set GPUJOBS_RECORD_HISTORIES to a directory to record SweepWorkflow histories")
	}
	dir = filepath.Join(dir, "sweeps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := env
	e.startWorker(t, "scheduler", "sched-hs", "--require-gpu-wait", "1s")
	e.startWorker(t, "cpu", "cpu-hs")
	c := e.dial(t)
	run := testutil.RandomHex(2) // sweep IDs are never reused on one server: a fresh one per run
	record := func(name, id string) {
		if _, err := jobclient.AwaitSweep(ctxTimeout(t, 2*time.Minute), c, id); err != nil {
			t.Fatal(err)
		}
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
		// The replay derives the sweep ID from the file name: record under the name the ID has.
		if err := os.WriteFile(filepath.Join(dir, strings.TrimPrefix(id, "sweep-")+".json"), out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s (%s): %d events", name, id, len(h.Events))
	}
	sweep := func(id string, args ...string) string {
		if out, stderr, code := e.starter(t, append(append([]string{"sweep"}, args...), "--id", id, "--json")...); code != 0 {
			t.Fatalf("starter sweep %v: exit %d %s %s", args, code, out, stderr)
		}
		return id
	}

	record("completed", sweep("sweep-completed-"+run, "vector_addition", "--size", "1000,2000", "--iterations", "1", "--device", "cpu,gpu!", "--parallel", "2"))

	canceled := sweep("sweep-canceled-"+run, "matrix_multiply", "--size", "256,320", "--iterations", "100000", "--device", "cpu", "--parallel", "1")
	testutil.WaitFor(t, "the sweep's first job to run", time.Minute, func() bool {
		st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, jobs.SweepJobID(canceled, 0, 2))
		return err == nil && st.Activity != nil && st.Activity.Progress != nil
	})
	if err := jobclient.Cancel(ctxTimeout(t, 10*time.Second), c, canceled); err != nil {
		t.Fatal(err)
	}
	record("canceled", canceled)
}
