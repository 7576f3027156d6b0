package monitor

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
)

func ptr(v float64) *float64 { return &v }

// telemetrySet: two GPU matrix multiplications with NVML figures, one GPU run without (a worker
// without NVML), a failed GPU run with figures (not counted) and a CPU run.
func telemetrySet() []jobs.Result {
	gpu := func(id string, status string, mean, peak *float64, mem int64) jobs.Result {
		return jobs.Result{JobID: id, JobType: "matrix_multiply", Status: status, WorkerType: "gpu", ProcessingTime: 0.1,
			StartTime: at(0), EndTime: at(1), GPUUtilizationMean: mean, GPUUtilizationPeak: peak, GPUMemoryPeak: mem}
	}
	return []jobs.Result{
		gpu("job-00000000000a", jobs.StatusCompleted, ptr(40), ptr(90), 2<<30),
		gpu("job-00000000000b", jobs.StatusCompleted, ptr(60), ptr(70), 3<<30),
		gpu("job-00000000000c", jobs.StatusCompleted, nil, nil, 0),
		gpu("job-00000000000d", jobs.StatusFailed, ptr(100), ptr(100), 60<<30),
		{JobID: "job-00000000000e", JobType: "matrix_multiply", Status: jobs.StatusCompleted, WorkerType: "cpu", ProcessingTime: 1, StartTime: at(0), EndTime: at(2)},
	}
}

// The groups carry the mean of the jobs' mean utilisation and the peaks, from completed results
// that have them; /metrics has them as histograms by job type; the report's table shows them.
func TestGPUTelemetryAggregates(t *testing.T) {
	agg := NewAggregator(NewMetrics())
	agg.SetClock(func() time.Time { return at(65) })
	agg.Add(telemetrySet()...)
	s := agg.Stats()
	for _, g := range s.Groups {
		switch g.WorkerType {
		case "gpu":
			want := GPUTelemetry{Results: 2, UtilizationMean: 50, UtilizationPeak: 90, MemoryPeak: 3 << 30}
			if g.GPUTelemetry == nil || *g.GPUTelemetry != want {
				t.Errorf("gpu group telemetry %+v, want %+v", g.GPUTelemetry, want)
			}
		case "cpu":
			if g.GPUTelemetry != nil {
				t.Errorf("cpu group has telemetry %+v", g.GPUTelemetry)
			}
		}
	}

	ts := httptest.NewServer(NewServer(agg, agg.metrics, func() bool { return true }, "r.jsonl", zap.NewNop()).Handler())
	defer ts.Close()
	var api struct {
		Groups []map[string]any `json:"groups"`
	}
	getInto(t, ts.URL+"/api/stats", &api)
	found := false
	for _, g := range api.Groups {
		if g["worker_type"] != "gpu" {
			continue
		}
		found = true
		want := map[string]any{"results": 2.0, "utilization_mean": 50.0, "utilization_peak": 90.0, "memory_peak": float64(3 << 30)}
		if got, _ := g["gpu_telemetry"].(map[string]any); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("/api/stats gpu_telemetry %v, want %v", g["gpu_telemetry"], want)
		}
	}
	if !found {
		t.Error("/api/stats has no gpu group")
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(get(t, ts.URL+"/metrics", http.StatusOK))))
	if err != nil {
		t.Fatal(err)
	}
	hist := func(name string) *dto.Histogram {
		f := families[name]
		if f == nil || len(f.Metric) != 1 || f.Metric[0].Label[0].GetValue() != "matrix_multiply" {
			t.Fatalf("%s: %v", name, f)
		}
		return f.Metric[0].Histogram
	}
	if h := hist("gpujobs_gpu_utilization_percent"); h.GetSampleCount() != 2 || h.GetSampleSum() != 100 {
		t.Errorf("utilisation histogram: %d samples summing to %v, want 2 and 100", h.GetSampleCount(), h.GetSampleSum())
	}
	if h := hist("gpujobs_gpu_memory_peak_bytes"); h.GetSampleCount() != 2 || h.GetSampleSum() != 5<<30 {
		t.Errorf("memory histogram: %d samples summing to %v, want 2 and 5 GiB", h.GetSampleCount(), h.GetSampleSum())
	}

	var md strings.Builder
	if err := writeMarkdown(&md, "r.jsonl", s, agg.Speedup(), Usage{}, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| 50 % / 90 % | 3.0 GiB |") {
		t.Errorf("report table lacks the GPU figures:\n%s", md.String())
	}
}
