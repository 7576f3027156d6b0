package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/html"

	"github.com/gpujobs/gpujobs/jobs"
)

// sweepResults is a matrix_multiply sweep over 4 sizes on CPU and GPU, twice each: CPU time
// n³/1e9 s and GPU time n³/1e11 s, so every point's speedup is 100, except size 4000 where the
// GPU runs took twice as long (speedup 50). Its results end from end on.
func sweepResults(id string, end time.Time) []jobs.Result {
	var out []jobs.Result
	for _, size := range []int{500, 1000, 2000, 4000} {
		for _, worker := range []string{"cpu", "gpu"} {
			for rep := range 2 {
				secs := float64(size*size*size) / 1e9
				if worker == "gpu" {
					secs /= 100
					if size == 4000 {
						secs *= 2
					}
				}
				out = append(out, jobs.Result{JobID: fmt.Sprintf("%s-%02d", id, len(out)+1), JobType: "matrix_multiply", SweepID: id,
					Params: json.RawMessage(fmt.Sprintf(`{"size":%d,"iterations":2,"precision":"fp32","seed":%d}`, size, 0*rep)),
					Status: jobs.StatusCompleted, WorkerType: worker, RequestedDevice: worker, ProcessingTime: secs,
					Metrics: map[string]float64{"gflops": 2 * float64(size*size*size) * 2 / secs / 1e9}, RateMetric: "gflops", RateUnit: "GFLOP/s",
					StartTime: end.Add(-time.Minute), EndTime: end.Add(time.Duration(len(out)) * time.Second)})
			}
		}
	}
	return out
}

func sweepAggregator() *Aggregator {
	t := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	agg := NewAggregator(nil)
	agg.SetClock(func() time.Time { return t.Add(time.Hour) })
	agg.Add(fixtureResults(50, 7, t)...) // not sweeps
	agg.Add(sweepResults("sweep-older", t)...)
	// A CPU-only sweep, newer: no speedup, rates only.
	cpuOnly := sweepResults("sweep-cpuonly", t.Add(10*time.Minute))
	var kept []jobs.Result
	for _, r := range cpuOnly {
		if r.WorkerType == "cpu" {
			kept = append(kept, r)
		}
	}
	agg.Add(kept...)
	return agg
}

func TestSweepsAPIGroupsResultsBySweep(t *testing.T) {
	agg := sweepAggregator()
	srv := NewServer(agg, nil, nil, "x", zap.NewNop())
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	get := func(q string) (int, Sweeps) {
		resp, err := http.Get(ts.URL + "/api/sweeps" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s Sweeps
		json.NewDecoder(resp.Body).Decode(&s) //nolint:errcheck
		return resp.StatusCode, s
	}
	code, all := get("")
	if code != 200 || all.Matched != 2 || len(all.Sweeps) != 2 || all.Sweeps[0].SweepID != "sweep-cpuonly" || all.Sweeps[1].SweepID != "sweep-older" {
		t.Fatalf("%d %+v: want the two sweeps, the most recent first", code, all)
	}
	s := all.Sweeps[1]
	if s.Results != 16 || s.Completed != 16 || strings.Join(s.Varies, ",") != "size" || len(s.Points) != 4 || s.JobType != "matrix_multiply" {
		t.Fatalf("sweep %+v", s.SweepSummary)
	}
	for i, want := range []float64{100, 100, 100, 50} {
		p := s.Points[i]
		if p.CPU == nil || p.GPU == nil || p.CPU.Runs != 2 || p.GPU.Runs != 2 || !roughly(p.Speedup, want, 1e-9) || p.CPU.RateUnit != "GFLOP/s" {
			t.Errorf("point %s: %+v, want 2 runs each, speedup %v", p.Label, p, want)
		}
	}
	if s.FirstEnd.IsZero() || !s.LastEnd.After(s.FirstEnd) {
		t.Errorf("end span %v..%v", s.FirstEnd, s.LastEnd)
	}
	if p := all.Sweeps[0].Points[0]; p.GPU != nil || p.Speedup != 0 || p.CPU.Runs != 2 {
		t.Errorf("CPU-only sweep's point %+v", p)
	}

	if _, one := get("?sweep_id=sweep-older"); one.Matched != 1 || one.Sweeps[0].SweepID != "sweep-older" {
		t.Errorf("?sweep_id: %+v", one)
	}
	if _, lim := get("?limit=1"); lim.Matched != 2 || len(lim.Sweeps) != 1 {
		t.Errorf("?limit=1: %+v", lim)
	}
	if code, _ := get("?limit=-1"); code != 400 {
		t.Errorf("?limit=-1: %d", code)
	}
	if code, _ := get("?job_type=x"); code != 400 {
		t.Errorf("unknown parameter: %d", code)
	}
	// New results reach the next answer (the index follows the aggregator).
	agg.Add(sweepResults("sweep-new", time.Date(2026, 12, 1, 10, 40, 0, 0, time.UTC))[:3]...)
	if _, more := get(""); more.Matched != 3 || more.Sweeps[0].SweepID != "sweep-new" || more.Sweeps[0].Results != 3 {
		t.Errorf("after more results: %+v", more)
	}
}

func TestSweepReportAppendsTablesAndCharts(t *testing.T) {
	dir := t.TempDir()
	agg := sweepAggregator()
	if _, err := WriteReport(dir, "x", agg); err != nil {
		t.Fatal(err)
	}
	drawn := map[string]int{}
	paths, err := WriteSweepReport(dir, agg, 0, func(w io.Writer, s SweepGroup) error {
		drawn[s.SweepID] = len(s.Points)
		_, err := io.WriteString(w, "png of "+s.SweepID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || drawn["sweep-older"] != 4 || drawn["sweep-cpuonly"] != 4 {
		t.Errorf("charts %v, drawn %v", paths, drawn)
	}
	md, _ := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	for _, want := range []string{
		"# gpujobs results report", // WriteReport's part stays
		"## Sweeps",
		"### sweep-older: matrix_multiply\n\n16 jobs: 16 completed, 0 failed, 0 canceled; ended 2026-12-01T10:00:00Z",
		"| size=4000 | 2 | 64 | 4.00 GFLOP/s | 2 | 1.28 | 200.00 GFLOP/s | 50.00× | 0 | 0 |",
		"![speedup curve of sweep-older](sweep_sweep-older.png)",
		"| size=500 | 2 | 0.125 | 4.00 GFLOP/s | 0 | - | - | - | 0 | 0 |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, SweepChartFile("sweep-older"))); string(b) != "png of sweep-older" {
		t.Errorf("chart file %q", b)
	}
	if f := SweepChartFile("a/b c"); f != "sweep_a_b_c.png" {
		t.Errorf("file name %q", f)
	}
}

func TestDashboardShowsTheSweepsCurves(t *testing.T) {
	bin := chromiumPath(t)
	agg := sweepAggregator()
	srv := NewServer(agg, nil, func() bool { return true }, "x", zap.NewNop())
	srv.MaxStreamAge = 300 * time.Millisecond
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	if n := byID(doc, "sweeps"); attr(n, "data-loaded") != "1" || attr(n, "data-matched") != "2" {
		t.Fatalf("sweeps card not rendered: loaded %q matched %q", attr(n, "data-loaded"), attr(n, "data-matched"))
	}
	api := srv.sweeps.sweeps(agg, "", 4)
	for _, s := range api.Sweeps {
		card := find(doc, func(n *html.Node) bool { return hasClass(n, "sweep") && attr(n, "data-sweep-id") == s.SweepID })
		if card == nil {
			t.Errorf("no chart of %s", s.SweepID)
			continue
		}
		if r := find(card, func(n *html.Node) bool { return hasClass(n, "sweep-results") }); num(t, attr(r, "data-value")) != float64(s.Results) {
			t.Errorf("%s shows %s results, API %d", s.SweepID, attr(r, "data-value"), s.Results)
		}
		speedups := findAll(card, func(n *html.Node) bool { return hasClass(n, "sweep-speedup-point") })
		rates := findAll(card, func(n *html.Node) bool { return hasClass(n, "sweep-rate-point") })
		if s.SweepID == "sweep-cpuonly" {
			// Nothing to compare: the CPU rates are drawn instead.
			if attr(card, "data-mode") != "rate" || len(speedups) != 0 || len(rates) != 4 {
				t.Errorf("%s: mode %q, %d speedup and %d rate points: want 4 CPU rate points", s.SweepID, attr(card, "data-mode"), len(speedups), len(rates))
			}
			for i, n := range rates {
				if num(t, attr(n, "data-value")) != s.Points[i].CPU.MeanRate || attr(n, "data-device") != "cpu" {
					t.Errorf("%s rate point %d: %s %s, API %v", s.SweepID, i, attr(n, "data-device"), attr(n, "data-value"), s.Points[i].CPU.MeanRate)
				}
			}
			continue
		}
		if attr(card, "data-mode") != "speedup" || len(speedups) != len(s.Points) {
			t.Errorf("%s: mode %q, %d speedup points, API %d points", s.SweepID, attr(card, "data-mode"), len(speedups), len(s.Points))
			continue
		}
		for i, n := range speedups {
			if p := s.Points[i]; num(t, attr(n, "data-value")) != p.Speedup || attr(n, "data-label") != p.Label {
				t.Errorf("%s point %d: %s=%s, API %s=%v", s.SweepID, i, attr(n, "data-label"), attr(n, "data-value"), p.Label, p.Speedup)
			}
		}
	}
}
