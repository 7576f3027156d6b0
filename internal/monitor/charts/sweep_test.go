package charts

import (
	"bytes"
	"encoding/json"
	"image/png"
	"testing"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/jobs"
)

func TestSweepCurveIsAPNG(t *testing.T) {
	mk := func(size int, precision, worker string, secs float64) jobs.Result {
		p, _ := json.Marshal(map[string]any{"size": size, "precision": precision})
		return jobs.Result{JobType: "matrix_multiply", Params: p, Status: jobs.StatusCompleted, WorkerType: worker, ProcessingTime: secs,
			Metrics: map[string]float64{"gflops": 1 / secs}, RateMetric: "gflops", RateUnit: "GFLOP/s"}
	}
	sizes := []jobs.Result{mk(500, "fp32", "cpu", 0.1), mk(500, "fp32", "gpu", 0.01), mk(8000, "fp32", "cpu", 100), mk(8000, "fp32", "gpu", 0.5)}
	cpuOnly := []jobs.Result{mk(500, "fp32", "cpu", 0.1), mk(1000, "fp32", "cpu", 0.8)}
	grid := []jobs.Result{mk(500, "fp32", "gpu", 0.1), mk(500, "tf32", "gpu", 0.05), mk(1000, "fp32", "cpu", 1)}
	for name, results := range map[string][]jobs.Result{"log-scaled sizes": sizes, "no speedup": cpuOnly, "two params vary": grid, "empty": nil} {
		var buf bytes.Buffer
		if err := SweepCurve(&buf, monitor.SweepGroup{SweepSummary: jobs.SummarizeSweep("sweep-x", results)}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 200 {
			t.Errorf("%s: %v", name, b)
		}
	}
}
