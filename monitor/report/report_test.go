package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

func TestReportReadsTheStoreAndWritesItsFiles(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "results.jsonl")
	var lines []string
	for _, r := range []any{result("job-00000000000a", "cpu", 0.25), result("job-00000000000b", "gpu", 0.002)} {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	if err := os.WriteFile(store, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := newRoot()
	cmd.SetArgs([]string{"--store", store, "--out", filepath.Join(dir, "out")})
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "2 results from ") {
		t.Errorf("output %q", out.String())
	}
	for _, f := range []string{"report.md", "results.csv", "time_per_job_type.png", "speedup.png"} {
		if st, err := os.Stat(filepath.Join(dir, "out", f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "out", "report.md"))
	if !strings.Contains(string(md), "| vector_addition | **125.00×** |") {
		t.Errorf("report.md:\n%s", md)
	}
}

func TestReportOfAMissingStoreFails(t *testing.T) {
	cmd := newRoot()
	cmd.SetArgs([]string{"--store", filepath.Join(t.TempDir(), "none.jsonl")})
	cmd.SetOut(&strings.Builder{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "read results") {
		t.Errorf("err %v", err)
	}
}

func result(id, worker string, pt float64) jobs.Result {
	t := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return jobs.Result{JobID: id, JobType: "vector_addition", Status: jobs.StatusCompleted, WorkerType: worker,
		Params: []byte(`{"size":1000}`), ProcessingTime: pt, StartTime: t, EndTime: t.Add(time.Second), Metrics: map[string]float64{"gbps": 1}}
}
