package main

import (
	"encoding/json"
	"fmt"
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

// A store that holds hostile lines (written by a monitor before it validated results) still
// gives a report of the valid results, and says which lines it skipped.
func TestReportOfAStoreWithHostileLines(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "results.jsonl")
	hostile := []string{
		`{"job_id":"job-0000000000c1","job_type":"vector_addition","status":"completed","worker_type":"gpu","processing_time":1e308}`,
		`{"job_id":"job-0000000000c2","job_type":"vector_addition","status":"completed","worker_type":"cpu","processing_time":1,"metrics":{"gflops":1e308}}`,
		`{"job_id":"job-0000000000c3","job_type":"vector_addition","status":"bogus"}`,
		`{"job_id":"job-0000000000c4","job_type":"vector_addition","status":"failed","end_time":"9999-12-31T23:59:59Z"}`,
	}
	lines := []string{string(mustJSON(t, result("job-00000000000a", "cpu", 0.25)))}
	lines = append(lines, hostile...)
	lines = append(lines, string(mustJSON(t, result("job-00000000000b", "gpu", 0.002))))
	if err := os.WriteFile(store, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	cmd := newRoot()
	cmd.SetArgs([]string{"--store", store, "--out", filepath.Join(dir, "out")})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("report over a hostile store: %v", err)
	}
	if !strings.HasPrefix(out.String(), "2 results from ") {
		t.Errorf("output %q", out.String())
	}
	for i, field := range []string{"processing_time", "metrics: headline rate", "status", "end_time"} {
		if want := fmt.Sprintf("skipped line %d of %s: invalid result: %s", i+2, store, field); !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "out", "report.md"))
	if s := string(md); strings.Contains(s, "Inf") || strings.Contains(s, "NaN") || !strings.Contains(s, "| vector_addition | **125.00×** |") ||
		!strings.Contains(s, "4 lines of the results file that are not valid results (skipped)") {
		t.Errorf("report.md:\n%s", md)
	}
	for _, f := range []string{"time_per_job_type.png", "speedup.png"} {
		if st, err := os.Stat(filepath.Join(dir, "out", f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
