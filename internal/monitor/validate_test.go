package monitor

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

var now0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestParseRecordRefusesEachHostileResultNamingTheField(t *testing.T) {
	for _, c := range hostileCases("aa", now0) {
		_, err := ParseRecordAt(c.body, now0)
		want := ErrRejected
		if c.malformed {
			want = ErrMalformed
		}
		if !errors.Is(err, want) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, want, c.field)
		}
	}
}

func TestValidateAcceptsRealResults(t *testing.T) {
	for _, r := range fixtureResults(3000, 11, t0) {
		if err := Validate(r, t0.Add(time.Hour)); err != nil {
			t.Fatalf("%s: %v", r.JobID, err)
		}
	}
	ok := func(name string, change func(m map[string]any)) {
		t.Helper()
		m := validBody("job-000000000001", now0)
		change(m)
		if _, err := ParseRecordAt(mustJSON(m), now0); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok("as is", func(map[string]any) {})
	ok("no times at all (a start that could not be decoded)", func(m map[string]any) {
		delete(m, "submit_time")
		delete(m, "start_time")
		delete(m, "end_time")
	})
	ok("a failure that reached no worker", func(m map[string]any) {
		m["status"], m["error_type"], m["error"] = "failed", jobs.ErrInvalidParams, "matrix_multiply: invalid size: 0\nallowed 1..32768"
		delete(m, "worker_type")
		delete(m, "metrics")
	})
	ok("a kind the monitor was not built with, and its own rate", func(m map[string]any) {
		m["job_type"], m["rate_metric"], m["rate_unit"] = "monte_carlo_pi", "points_per_sec", "points/s"
		m["metrics"] = map[string]any{"points_per_sec": 4e11, "estimate": 3.14159, "error": -1e-7}
	})
	ok("a starter clock 4 minutes ahead of the worker's", func(m map[string]any) {
		m["submit_time"] = now0.Add(-time.Hour + 4*time.Minute).Format(time.RFC3339)
	})
	ok("an end_time 4 minutes ahead of the monitor's clock", func(m map[string]any) {
		m["end_time"] = now0.Add(4 * time.Minute).Format(time.RFC3339)
	})
	ok("a big diverged loss, which is not the headline rate", func(m map[string]any) {
		m["metrics"] = map[string]any{"gflops": 10, "final_loss": 1e300}
	})
	ok("fields a newer producer adds", func(m map[string]any) { m["energy_joules"] = 12.5 })
	ok("the estimate of a job that could never finish", func(m map[string]any) {
		m["status"], m["error_type"], m["error"], m["estimated_time"], m["processing_time"] = "failed", jobs.ErrTimeout, "job timed out", 7e7, 0
		delete(m, "metrics")
	})
}

// The aggregator refuses what fails Validate even when it is handed results directly, so its
// numbers stay finite and its counts add up whoever feeds it.
func TestAggregatorRefusesInvalidResultsItIsGiven(t *testing.T) {
	a := handAggregator()
	before := a.Stats()
	bad := []jobs.Result{
		{JobID: "job-bad000000001", JobType: "matrix_multiply", WorkerType: "gpu", Status: jobs.StatusCompleted, ProcessingTime: math.Inf(1)},
		{JobID: "job-bad000000002", JobType: "matrix_multiply", WorkerType: "gpu", Status: jobs.StatusCompleted, ProcessingTime: math.NaN()},
		{JobID: "job-bad000000003", JobType: "matrix_multiply", WorkerType: "cpu", Status: "bogus"},
		{JobID: "job-bad000000004", JobType: "matrix_multiply", WorkerType: "cpu", Status: jobs.StatusCompleted, ProcessingTime: 1,
			Metrics: map[string]float64{"gflops": math.Inf(1)}},
		{JobID: "job-bad000000005", JobType: "matrix_multiply", WorkerType: "cpu", Status: jobs.StatusCompleted, ProcessingTime: 1,
			EndTime: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	a.Add(bad...)
	after := a.Stats()
	if after.Totals.Rejected != int64(len(bad)) {
		t.Errorf("rejected %d, want %d", after.Totals.Rejected, len(bad))
	}
	after.Totals.Rejected, after.GeneratedAt = 0, before.GeneratedAt
	if x, y := string(mustJSON(before)), string(mustJSON(after)); x != y {
		t.Errorf("invalid results changed the aggregates:\n%s\n%s", x, y)
	}
}

func TestCountersOfTheStoreSurviveAReopen(t *testing.T) {
	path := t.TempDir() + "/results.jsonl"
	s, st, err := OpenStore(path, nil)
	if err != nil || st.Counters != (Counters{}) || st.CountersErr != nil {
		t.Fatalf("open: %+v %v", st, err)
	}
	want := Counters{Duplicates: 3, Malformed: 2, Rejected: 7}
	if err := s.SaveCounters(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, st, err = OpenStore(path, nil)
	if err != nil || st.Counters != want {
		t.Fatalf("reopen: counters %+v %v, want %+v", st.Counters, err, want)
	}
	s.Close()
	if st, err := ReadStore(path, nil); err != nil || st.Counters != want {
		t.Errorf("ReadStore: counters %+v %v", st.Counters, err)
	}
	a := NewAggregator(NewMetrics())
	a.RestoreCounters(want)
	a.CountRejected()
	if tt := a.Stats().Totals; tt.Duplicates != 3 || tt.Malformed != 2 || tt.Rejected != 8 {
		t.Errorf("restored totals %+v", tt)
	}
}

func TestADamagedCountersFileIsReportedNotFatal(t *testing.T) {
	path := t.TempDir() + "/results.jsonl"
	if err := writeFile(CountersPath(path), "{not json"); err != nil {
		t.Fatal(err)
	}
	s, st, err := OpenStore(path, nil)
	if err != nil {
		t.Fatalf("a damaged counters file stopped the store: %v", err)
	}
	defer s.Close()
	if st.CountersErr == nil || st.Counters != (Counters{}) {
		t.Errorf("counters %+v, err %v", st.Counters, st.CountersErr)
	}
}

func TestAStoreWithHostileLinesLoadsAndSaysWhichLines(t *testing.T) {
	path := t.TempDir() + "/results.jsonl"
	var lines []string
	valid := 0
	for i, r := range fixtureResults(50, 12, t0) {
		lines = append(lines, string(mustJSON(r)))
		valid++
		if i%10 == 0 {
			for _, c := range hostileCases(strings.Repeat("b", 2)+string(rune('a'+i/10)), time.Now()) {
				if !strings.Contains(string(c.body), "\n") {
					lines = append(lines, string(c.body))
				}
			}
		}
	}
	if err := writeFile(path, strings.Join(lines, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
	a := NewAggregator(NewMetrics())
	s, st, err := OpenStore(path, func(r Record) { a.Add(r.Result) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st.Results != valid || a.Len() != valid || st.NotLoaded() != len(lines)-valid || len(st.Skipped) != maxSkippedReported {
		t.Errorf("loaded %d (aggregated %d), skipped %d (%d listed), want %d and %d", st.Results, a.Len(), st.NotLoaded(), len(st.Skipped), valid, len(lines)-valid)
	}
	if st.Skipped[0].Line != 2 || !strings.Contains(st.Skipped[0].Reason, "processing_time") {
		t.Errorf("first skipped line %+v", st.Skipped[0])
	}
	for _, v := range []any{a.Stats(), a.Speedup(), a.Summary()} {
		if _, err := json.Marshal(v); err != nil {
			t.Errorf("aggregates after a hostile store: %v", err)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
