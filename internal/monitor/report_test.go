package monitor

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportWritesMarkdownCSVAndCharts(t *testing.T) {
	dir := t.TempDir()
	fake := Chart{File: "fake.png", Caption: "a chart", Draw: func(w io.Writer, s Stats, sp Speedups) error {
		_, err := fmt.Fprintf(w, "%d results, %d job types compared", s.Totals.Results, len(sp.JobTypes))
		return err
	}}
	paths, err := WriteReport(dir, "results/results.jsonl", handAggregator(), fake)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %v", paths)
	}
	md, _ := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	for _, want := range []string{
		"| 8 | 6 | 2 | 0 | 4 | 3 | 1 |", // totals
		"| matrix_multiply | cpu | 3 | 3 | 0 | 1 | 2.333 | 1 | 2 | 3.8 | 4 | 11.67 GFLOP/s |",
		"| matrix_multiply | **15.00×** | `{\"iterations\":2,\"size\":512}` | 2 | 2 | 3 | 0.2 | 15.00× |",
		"| vector_addition | - | none ran on both",
		"| InvalidParams | 1 |",
		"| matrix_multiply | no GPU worker polling gpu_queue | 1 |",
		"![a chart](fake.png)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	f, _ := os.Open(filepath.Join(dir, ReportCSV))
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 9 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("results.csv: %d rows, %v", len(rows), err)
	}
	if r := rows[4]; r[0] != "job-000000000004" || r[6] != "no GPU worker polling gpu_queue" || r[7] != "4" || r[11] != "5" || r[12] != "GFLOP/s" || r[18] != `{"iterations":2,"size":512}` {
		t.Errorf("fallback row %v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "fake.png")); string(b) != "8 results, 2 job types compared" {
		t.Errorf("the chart was drawn from %q", b)
	}
}

func TestReportOfNothingStillWrites(t *testing.T) {
	if _, err := WriteReport(t.TempDir(), "empty", NewAggregator(nil)); err != nil {
		t.Fatal(err)
	}
}
