package jobs_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
)

func run(size int, worker, fallback string, seconds, gflops float64, status string) jobs.Result {
	params, _ := json.Marshal(map[string]any{"size": size, "iterations": 10, "precision": "fp32"})
	r := jobs.Result{JobType: "matrix_multiply", Params: params, Status: status, WorkerType: worker, Fallback: fallback,
		ProcessingTime: seconds, RateMetric: "gflops", RateUnit: "GFLOP/s", Metrics: map[string]float64{"gflops": gflops}}
	return r
}

func TestSummarizeSweepComputesSpeedupPerPoint(t *testing.T) {
	results := []jobs.Result{
		// size 2000: CPU 3 runs (one a GPU fallback), GPU 2 runs.
		run(2000, "cpu", "", 4, 40, jobs.StatusCompleted),
		run(2000, "gpu", "", 0.1, 1600, jobs.StatusCompleted),
		run(2000, "cpu", "", 2, 80, jobs.StatusCompleted),
		run(2000, "gpu", "", 0.3, 533, jobs.StatusCompleted),
		run(2000, "cpu", "no GPU worker polling gpu_queue", 3, 60, jobs.StatusCompleted),
		// size 500 (listed after 2000: the summary sorts by size): CPU only, one failure.
		run(500, "cpu", "", 0.5, 5, jobs.StatusCompleted),
		run(500, "", "", 0, 0, jobs.StatusFailed),
		// size 1000: a canceled GPU run and a completed CPU run.
		run(1000, "cpu", "", 1, 20, jobs.StatusCompleted),
		run(1000, "gpu", "", 0, 0, jobs.StatusCanceled),
	}
	// Params written in another key order are the same point.
	results[2].Params = json.RawMessage(`{"precision":"fp32","iterations":10,"size":2000}`)
	s := jobs.SummarizeSweep("sweep-1", results)
	if s.SweepID != "sweep-1" || s.JobType != "matrix_multiply" || s.Results != 9 || s.Completed != 7 || s.Failed != 1 || s.Canceled != 1 {
		t.Errorf("counts %+v", s)
	}
	if strings.Join(s.Varies, ",") != "size" || len(s.Points) != 3 {
		t.Fatalf("varies %v, %d points: want size and 3 points", s.Varies, len(s.Points))
	}
	for i, want := range []float64{500, 1000, 2000} {
		if p := s.Points[i]; p.X == nil || *p.X != want || p.Label != "size="+strconv.Itoa(int(want)) {
			t.Errorf("point %d: x %v label %q, want %v", i, p.X, p.Label, want)
		}
	}
	big := s.Points[2]
	if big.CPU == nil || big.CPU.Runs != 3 || big.CPU.MeanTime != 3 || big.CPU.MeanRate != 60 || big.CPU.RateUnit != "GFLOP/s" {
		t.Errorf("size 2000 on CPU: %+v, want 3 runs (the fallback included), mean 3 s, 60 GFLOP/s", big.CPU)
	}
	if big.GPU == nil || big.GPU.Runs != 2 || big.GPU.MeanTime != 0.2 || big.Fallbacks != 1 {
		t.Errorf("size 2000 on GPU: %+v, fallbacks %d", big.GPU, big.Fallbacks)
	}
	if big.Speedup != 15 {
		t.Errorf("speedup %v, want 3 s / 0.2 s = 15", big.Speedup)
	}
	if p := s.Points[0]; p.GPU != nil || p.Speedup != 0 || p.Failed != 1 {
		t.Errorf("size 500: %+v, want no GPU runs, no speedup, 1 failure", p)
	}
	if p := s.Points[1]; p.Failed != 1 || p.GPU != nil || p.Speedup != 0 {
		t.Errorf("size 1000: %+v", p)
	}

	var b strings.Builder
	if err := jobs.WriteSweepTable(&b, s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"sweep sweep-1: matrix_multiply, 9 jobs: 7 completed, 1 failed, 1 canceled",
		"SIZE  CPU TIME",
		"2000  3.000s (3 runs)  60.0 GFLOP/s  200ms (2 runs)  1066.5 GFLOP/s  15.00x   1 fallback to CPU",
		"500   500ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestSummarizeSweepWithSeveralVaryingParams(t *testing.T) {
	a := run(1000, "gpu", "", 1, 1, jobs.StatusCompleted)
	b := run(1000, "gpu", "", 1, 1, jobs.StatusCompleted)
	b.Params = json.RawMessage(`{"size":1000,"iterations":10,"precision":"tf32"}`)
	s := jobs.SummarizeSweep("s", []jobs.Result{b, a})
	if strings.Join(s.Varies, ",") != "precision" || s.Points[0].Label != "precision=fp32" || s.Points[0].X != nil {
		t.Errorf("varies %v, first point %+v: want precision, sorted by label, no x", s.Varies, s.Points[0])
	}
	one := jobs.SummarizeSweep("s", []jobs.Result{a})
	if len(one.Varies) != 0 || one.Points[0].Label != "all" {
		t.Errorf("a one-point sweep: %+v", one)
	}
}

func TestSweepRequestValidate(t *testing.T) {
	job := jobs.Request{JobType: "matrix_multiply"}
	for _, tc := range []struct {
		in   jobs.SweepRequest
		want string
	}{
		{jobs.SweepRequest{SweepID: "sweep 1", JobType: "matrix_multiply", Jobs: []jobs.Request{job}}, "invalid sweep_id"},
		{jobs.SweepRequest{SweepID: "s", JobType: "matrix_multiply"}, "invalid sweep: 0 jobs, allowed 1..1000"},
		{jobs.SweepRequest{SweepID: "s", JobType: "matrix_multiply", Parallel: 101, Jobs: []jobs.Request{job}}, "invalid parallel: 101 is out of range, allowed 1..100"},
		{jobs.SweepRequest{SweepID: "s", JobType: "matrix_multiply", Jobs: []jobs.Request{{JobType: "matrix_multiply", Priority: 7}}}, "sweep job 1: invalid priority"},
		{jobs.SweepRequest{SweepID: strings.Repeat("s", 196), JobType: "matrix_multiply", Jobs: []jobs.Request{job}}, "invalid sweep_id: 196 bytes, allowed 1..195"},
	} {
		if err := tc.in.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.in, err, tc.want)
		}
	}
	ok := jobs.SweepRequest{SweepID: jobs.NewSweepID(), JobType: "matrix_multiply", Jobs: []jobs.Request{job, job}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	if id := jobs.SweepJobID("sweep-a", 6, 120); id != "sweep-a-007" {
		t.Errorf("SweepJobID = %q, want sweep-a-007", id)
	}
}
