package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// A job kind added from outside the repository (examples/montecarlo, registered by
// examples/worker's own main with the cheapest-device strategy) runs end to end through a
// starter that was not built with it: params as --param, validation errors from the cluster,
// its headline metric in the result and the monitor.
func TestAJobKindAddedOutsideTheRepository(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	if _, err := os.Stat(filepath.Join(env.bin, "example-worker")); err != nil {
		t.Fatal("bin/example-worker is missing: make build builds it")
	}
	b := testutil.StartBroker(t) // a result queue and a scheduler of the test's own
	e := env.isolated(t, b.URL)
	args := func(role, id string) []string {
		return append([]string{"--role", role, "--id", id, "--log-format", "json"}, e.commonArgs()...)
	}
	e.startProcess(t, "sched-ex", "example-worker", args("scheduler", "sched-ex")...)
	e.startProcess(t, "cpu-ex", "example-worker", args("cpu", "cpu-ex")...)
	api := e.startMonitor(t)

	r := e.submitJSON(t, "monte_carlo_pi", "--param", "samples=2000000", "--param", "steps=4", "--param", "seed=3")
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-ex" || r.RateMetric != "samples_per_sec" || r.RateUnit != "samples/s" {
		t.Fatalf("result %+v", r)
	}
	if pi := r.Metrics["pi"]; pi < 3.13 || pi > 3.153 || r.Metrics["samples_per_sec"] <= 0 {
		t.Errorf("pi %v, %v samples/s", pi, r.Metrics["samples_per_sec"])
	}
	if !strings.HasPrefix(r.ScheduleReason, "cheapest: no GPU worker polling") {
		t.Errorf("schedule reason %q: want the example's strategy", r.ScheduleReason)
	}
	if got := jobs.FormatRate(r); !strings.HasSuffix(got, "samples/s") {
		t.Errorf("the starter's rate %q", got)
	}

	// Validation errors come back from the cluster, one line naming the field and range.
	_, stderr, code := e.starter(t, "submit", "monte_carlo_pi", "--param", "samples=-5")
	if code != 1 || !strings.Contains(stderr, "monte_carlo_pi: invalid samples: out of range, allowed 1..1099511627776") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("invalid params: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = e.starter(t, "submit", "monte_carl_pi")
	if code != 1 || !strings.Contains(stderr, `unknown job type "monte_carl_pi": known types are command, image_processing, matrix_multiply, monte_carlo_pi`) {
		t.Errorf("a misspelt kind: exit %d, stderr %q", code, stderr)
	}

	// The monitor groups it with its headline rate.
	testutil.WaitFor(t, "the monitor to count the result", 30*time.Second, func() bool { return totals(t, api).Completed >= 1 })
	resp, err := http.Get(api + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s monitor.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range s.Groups {
		if g.JobType == "monte_carlo_pi" && g.Rate != nil && g.Rate.Unit == "samples/s" && g.Rate.Mean > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("monitor groups %+v: want monte_carlo_pi with its samples/s", s.Groups)
	}
}
