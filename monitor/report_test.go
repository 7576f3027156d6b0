package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	var out syncBuffer
	cmd := newRoot()
	cmd.SetArgs([]string{"report", "--store", store, "--out", filepath.Join(dir, "out")})
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
	cmd.SetArgs([]string{"report", "--store", filepath.Join(t.TempDir(), "none.jsonl")})
	cmd.SetOut(&syncBuffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "read results") {
		t.Errorf("err %v", err)
	}
}
