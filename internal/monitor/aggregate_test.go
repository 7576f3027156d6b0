package monitor

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// handSet is a small result set whose aggregates are worked out by hand in the tests.
func handSet() []jobs.Result {
	mm := func(id, params, wt string, pt, gflops, start, end float64) jobs.Result {
		return jobs.Result{JobID: id, JobType: "matrix_multiply", Params: json.RawMessage(params), WorkerType: wt,
			Device: wt + " device", Status: jobs.StatusCompleted, ProcessingTime: pt, Metrics: map[string]float64{"gflops": gflops},
			SubmitTime: at(start), StartTime: at(start), EndTime: at(end)}
	}
	fallback := mm("job-000000000004", `{"size":512,"iterations":2}`, "cpu", 4.0, 5, 4, 9)
	fallback.Fallback = "no GPU worker polling gpu_queue"
	return []jobs.Result{
		mm("job-000000000001", `{"size":512,"iterations":2}`, "gpu", 0.1, 100, 0, 1),
		mm("job-000000000002", `{ "iterations": 2, "size": 512 }`, "gpu", 0.3, 200, 1, 2),
		mm("job-000000000003", `{"size":512,"iterations":2}`, "cpu", 2.0, 10, 2, 4),
		fallback,
		mm("job-000000000005", `{"size":1024,"iterations":1}`, "cpu", 1.0, 20, 9, 10),
		{JobID: "job-000000000006", JobType: "vector_addition", Params: json.RawMessage(`{"size":1000}`), WorkerType: "gpu", Status: jobs.StatusCompleted,
			ProcessingTime: 0.5, Metrics: map[string]float64{"gbps": 30}, SubmitTime: at(10), StartTime: at(10), EndTime: at(11)},
		{JobID: "job-000000000007", JobType: "vector_addition", Params: json.RawMessage(`{"size":1000}`), WorkerType: "gpu", Status: jobs.StatusFailed,
			ErrorType: jobs.ErrKernel, Error: "CUDA_ERROR_LAUNCH_FAILED", SubmitTime: at(11), StartTime: at(11), EndTime: at(12)},
		{JobID: "job-000000000008", JobType: "vector_addition", Status: jobs.StatusFailed,
			ErrorType: jobs.ErrInvalidParams, Error: "vector_addition: invalid size: 0", SubmitTime: at(12), EndTime: at(20)},
	}
}

func handAggregator() *Aggregator {
	a := NewAggregator(NewMetrics())
	a.SetClock(func() time.Time { return at(65) })
	a.Add(handSet()...)
	return a
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestStatsMatchHandComputedValues(t *testing.T) {
	s := handAggregator().Stats()
	wantTotals := Totals{Results: 8, Completed: 6, Failed: 2, GPURuns: 4, CPURuns: 3, Fallbacks: 1}
	if s.Totals != wantTotals {
		t.Errorf("totals %+v, want %+v", s.Totals, wantTotals)
	}
	type g struct {
		results, completed, failed, fallbacks int
		pt                                    *TimeStats
		rate                                  *Rate
	}
	want := map[string]g{
		"matrix_multiply/cpu":  {3, 3, 0, 1, &TimeStats{Avg: 7.0 / 3, Min: 1, Max: 4, P50: 2, P95: 3.8}, &Rate{35.0 / 3, "GFLOP/s"}},
		"matrix_multiply/gpu":  {2, 2, 0, 0, &TimeStats{Avg: 0.2, Min: 0.1, Max: 0.3, P50: 0.2, P95: 0.29}, &Rate{150, "GFLOP/s"}},
		"vector_addition/gpu":  {2, 1, 1, 0, &TimeStats{Avg: 0.5, Min: 0.5, Max: 0.5, P50: 0.5, P95: 0.5}, &Rate{30, "GB/s"}},
		"vector_addition/none": {1, 0, 1, 0, nil, nil},
	}
	if len(s.Groups) != len(want) {
		t.Fatalf("%d groups, want %d: %+v", len(s.Groups), len(want), s.Groups)
	}
	for _, got := range s.Groups {
		key := got.JobType + "/" + got.WorkerType
		w, ok := want[key]
		if !ok {
			t.Errorf("unexpected group %s", key)
			continue
		}
		if got.Results != w.results || got.Completed != w.completed || got.Failed != w.failed || got.Fallbacks != w.fallbacks {
			t.Errorf("%s: counts %+v, want %+v", key, got, w)
		}
		if (got.ProcessingTime == nil) != (w.pt == nil) || (got.Rate == nil) != (w.rate == nil) {
			t.Errorf("%s: processing_time %v rate %v, want %v %v", key, got.ProcessingTime, got.Rate, w.pt, w.rate)
			continue
		}
		if w.pt != nil {
			p, q := *got.ProcessingTime, *w.pt
			if !near(p.Avg, q.Avg) || !near(p.Min, q.Min) || !near(p.Max, q.Max) || !near(p.P50, q.P50) || !near(p.P95, q.P95) {
				t.Errorf("%s: processing_time %+v, want %+v", key, p, q)
			}
		}
		if w.rate != nil && (!near(got.Rate.Mean, w.rate.Mean) || got.Rate.Unit != w.rate.Unit) {
			t.Errorf("%s: rate %+v, want %+v", key, *got.Rate, *w.rate)
		}
	}
	wantFailures := []Count{{jobs.ErrInvalidParams, 1}, {jobs.ErrKernel, 1}}
	if !reflect.DeepEqual(s.Failures, wantFailures) {
		t.Errorf("failures %+v, want %+v", s.Failures, wantFailures)
	}
	wantFallbacks := []FallbackCount{{"matrix_multiply", "no GPU worker polling gpu_queue", 1}}
	if !reflect.DeepEqual(s.Fallbacks, wantFallbacks) {
		t.Errorf("fallbacks %+v, want %+v", s.Fallbacks, wantFallbacks)
	}

	tp := s.Throughput
	// 8 results from the first start (t0) to the last end (t0+20 s); 5 ended in (t0+5 s, t0+65 s].
	if !near(tp.Overall, 8.0/20) || !near(tp.LastMinute, 5.0/60) {
		t.Errorf("throughput overall %v last minute %v, want 0.4 and 5/60", tp.Overall, tp.LastMinute)
	}
	if tp.FirstStart == nil || !tp.FirstStart.Equal(t0) || tp.LastEnd == nil || !tp.LastEnd.Equal(at(20)) {
		t.Errorf("throughput span %v..%v", tp.FirstStart, tp.LastEnd)
	}
	sr := tp.Series
	if sr == nil || sr.BucketSeconds != 1 || !sr.Start.Equal(t0) || len(sr.GPU) != 21 {
		t.Fatalf("series %+v: want 21 one-second buckets from t0", sr)
	}
	// GPU runs ended at 1, 2 and 11 s; CPU runs (the fallback included) at 4, 9, 10; failures at 12, 20.
	for i, w := range map[int][3]int{1: {1, 0, 0}, 2: {1, 0, 0}, 4: {0, 1, 0}, 9: {0, 1, 0}, 10: {0, 1, 0}, 11: {1, 0, 0}, 12: {0, 0, 1}, 20: {0, 0, 1}} {
		if got := [3]int{sr.GPU[i], sr.CPU[i], sr.Failed[i]}; got != w {
			t.Errorf("bucket %d: gpu/cpu/failed %v, want %v", i, got, w)
		}
	}
}

func TestSpeedupComparesSameParamsAndCountsFallbacksAsCPU(t *testing.T) {
	sp := handAggregator().Speedup()
	if len(sp.JobTypes) != 2 {
		t.Fatalf("job types %+v", sp.JobTypes)
	}
	mm, va := sp.JobTypes[0], sp.JobTypes[1]
	// Same params written two ways are one group: GPU 0.1, 0.3 (mean 0.2); CPU 2.0 and the 4.0
	// fallback (mean 3.0): 15x. size 1024 ran on a CPU only.
	if mm.JobType != "matrix_multiply" || !near(mm.Speedup, 15) || mm.Uncompared != 1 || len(mm.Compared) != 1 {
		t.Fatalf("matrix_multiply %+v", mm)
	}
	c := mm.Compared[0]
	if string(c.Params) != `{"iterations":2,"size":512}` || c.CPURuns != 2 || c.GPURuns != 2 || !near(c.CPUMean, 3) || !near(c.GPUMean, 0.2) {
		t.Errorf("comparison %+v (params %s)", c, c.Params)
	}
	if va.JobType != "vector_addition" || va.Speedup != 0 || len(va.Compared) != 0 || va.Uncompared != 1 {
		t.Errorf("vector_addition %+v: no CPU run, nothing to compare", va)
	}
}

func TestSpeedupOfSeveralParamsIsTheirGeometricMean(t *testing.T) {
	a := NewAggregator(nil)
	run := func(id, params, wt string, pt float64) jobs.Result {
		return jobs.Result{JobID: id, JobType: "matrix_multiply", Params: json.RawMessage(params), WorkerType: wt, Status: jobs.StatusCompleted, ProcessingTime: pt}
	}
	a.Add(run("a", `{"size":1}`, "cpu", 2), run("b", `{"size":1}`, "gpu", 1), // 2x
		run("c", `{"size":2}`, "cpu", 80), run("d", `{"size":2}`, "gpu", 10)) // 8x
	js := a.Speedup().JobTypes[0]
	if !near(js.Speedup, 4) || len(js.Compared) != 2 {
		t.Errorf("speedup %v over %d params, want 4 = sqrt(2*8) over 2", js.Speedup, len(js.Compared))
	}
}

func TestAggregatesDoNotDependOnArrivalOrder(t *testing.T) {
	results := fixtureResults(2000, 7, t0)
	a := NewAggregator(nil)
	a.SetClock(func() time.Time { return t0.Add(time.Hour) })
	a.Add(results...)
	shuffled := append([]jobs.Result(nil), results...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := NewAggregator(nil)
	b.SetClock(func() time.Time { return t0.Add(time.Hour) })
	b.Add(shuffled...)
	if x, y := string(mustJSON(a.Stats())), string(mustJSON(b.Stats())); x != y {
		t.Errorf("stats differ with arrival order:\n%s\n%s", x, y)
	}
	if x, y := string(mustJSON(a.Speedup())), string(mustJSON(b.Speedup())); x != y {
		t.Errorf("speedup differs with arrival order:\n%s\n%s", x, y)
	}
}

func TestPercentileInterpolatesBetweenRanks(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {0.5, 5.5}, {0.95, 9.55}, {1, 10}} {
		if got := percentile(s, c.p); !near(got, c.want) {
			t.Errorf("p%v = %v, want %v", c.p*100, got, c.want)
		}
	}
	if got := percentile([]float64{3}, 0.95); got != 3 {
		t.Errorf("p95 of one value = %v", got)
	}
}

func TestCanonicalParams(t *testing.T) {
	for in, want := range map[string]string{
		``:                                     `{}`,
		`{ "b": 1, "a": {"y": 2, "x": 1.50} }`: `{"a":{"x":1.50,"y":2},"b":1}`,
		`{"size": 12345678901234567890}`:       `{"size":12345678901234567890}`,
	} {
		if got := string(CanonicalParams(json.RawMessage(in))); got != want {
			t.Errorf("CanonicalParams(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestResultsFilterAndOrder(t *testing.T) {
	a := handAggregator()
	got, matched := a.Results(Filter{JobType: "matrix_multiply", WorkerType: "cpu", Limit: 2})
	if matched != 3 || len(got) != 2 || got[0].JobID != "job-000000000005" || got[1].JobID != "job-000000000004" {
		t.Errorf("newest first, limit 2: matched %d, got %v", matched, ids(got))
	}
	got, matched = a.Results(Filter{Status: jobs.StatusFailed, Oldest: true})
	if matched != 2 || len(got) != 2 || got[0].JobID != "job-000000000007" {
		t.Errorf("failed, oldest first: matched %d, got %v", matched, ids(got))
	}
	if got, _ := a.Results(Filter{WorkerType: WorkerNone}); len(got) != 1 || got[0].JobID != "job-000000000008" {
		t.Errorf("worker_type none: %v", ids(got))
	}
}

func ids(rs []jobs.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.JobID
	}
	return out
}
