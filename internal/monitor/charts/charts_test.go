package charts

import (
	"bytes"
	"image/png"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/jobs"
)

func TestChartsArePNGsOfTheAggregates(t *testing.T) {
	agg := monitor.NewAggregator(nil)
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, r := range []struct {
		worker string
		secs   float64
	}{{"cpu", 2}, {"gpu", 0.1}, {"cpu", 3}} {
		agg.Add(jobs.Result{JobID: "job-00000000000" + string(rune('a'+i)), JobType: "matrix_multiply", Status: jobs.StatusCompleted,
			WorkerType: r.worker, Params: []byte(`{"size":512}`), ProcessingTime: r.secs, Metrics: map[string]float64{"gflops": 10},
			StartTime: start, EndTime: start.Add(time.Second)})
	}
	for _, empty := range []bool{false, true} {
		a := agg
		if empty {
			a = monitor.NewAggregator(nil)
		}
		for _, c := range All() {
			var buf bytes.Buffer
			if err := c.Draw(&buf, a.Stats(), a.Speedup()); err != nil {
				t.Fatalf("%s (empty %v): %v", c.File, empty, err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("%s: %v", c.File, err)
			}
			if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 && !empty {
				t.Errorf("%s is %v", c.File, b)
			}
		}
	}
}
