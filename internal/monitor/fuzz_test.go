package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// FuzzParseRecord feeds arbitrary message bodies to the monitor's parsing and validation, and
// whatever it accepts to the aggregates, the API's encoding, /metrics and the report. Whatever
// the body: parsing does not panic, a refusal is ErrMalformed or ErrRejected, and an accepted
// result is counted, re-reads the same from its stored line, and leaves every aggregate finite
// and encodable. make test runs it for a few seconds (go test -fuzz FuzzParseRecord); the seed
// corpus (run by every go test) is issue 9's hostile results and real ones.
func FuzzParseRecord(f *testing.F) {
	for _, c := range hostileCases("ff", now0) {
		if len(c.body) < 4096 {
			f.Add(c.body)
		}
	}
	f.Add(mustJSON(validBody("job-f00000000001", now0)))
	gpu := validBody("job-f00000000002", now0)
	gpu["worker_type"], gpu["processing_time"], gpu["device"] = "gpu", 1e-9, "NVIDIA H200"
	f.Add(mustJSON(gpu))
	for _, r := range fixtureResults(8, 13, now0.Add(-time.Hour)) {
		f.Add(mustJSON(r))
	}
	f.Add([]byte(`{"job_id":"j","job_type":"k","status":"failed","submit_time":"2026-12-01T12:04:59+00:00"}`))
	f.Add([]byte(`{"job_id":"j","job_type":"k","status":"completed","worker_type":"gpu","processing_time":2592000,"metrics":{"gflops":1e9}}`))

	base := []jobs.Result{ // runs the fuzzed result compares with: same job type and params as validBody
		{JobID: "job-base00000001", JobType: "matrix_multiply", Params: json.RawMessage(`{"iterations":1,"size":64}`), WorkerType: "cpu",
			Status: jobs.StatusCompleted, ProcessingTime: 2.5e6, Metrics: map[string]float64{"gflops": 1e9}, EndTime: now0.Add(-time.Minute)},
		{JobID: "job-base00000002", JobType: "matrix_multiply", Params: json.RawMessage(`{"iterations":1,"size":64}`), WorkerType: "gpu",
			Status: jobs.StatusCompleted, ProcessingTime: 1e-9, Metrics: map[string]float64{"gflops": 0}, StartTime: EarliestTime, EndTime: now0},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, err := ParseRecordAt(body, now0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrRejected) {
				t.Fatalf("refusal of another kind: %v", err)
			}
			return
		}
		if err := Validate(rec.Result, now0); err != nil {
			t.Fatalf("accepted a result that Validate refuses: %v", err)
		}
		if bytes.ContainsAny(rec.Line, "\r\n") {
			t.Fatalf("a stored line with a line break: %q", rec.Line)
		}
		again, err := ParseRecordAt(rec.Line, now0)
		if err != nil || string(mustJSON(again.Result)) != string(mustJSON(rec.Result)) {
			t.Fatalf("the stored line reads back otherwise: %v", err)
		}

		a := NewAggregator(NewMetrics())
		a.SetClock(func() time.Time { return now0 })
		a.Add(base...)
		a.AddRecords([]Record{rec})
		if a.Len() != len(base)+1 {
			t.Fatalf("the aggregator refused what ParseRecord accepted: %+v", a.Stats().Totals)
		}
		for _, v := range []any{a.Stats(), a.Speedup(), a.Summary()} {
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("aggregates cannot be encoded: %v", err)
			}
		}
		var md strings.Builder
		if err := writeMarkdown(&md, "fuzz", a.Stats(), a.Speedup(), a.Usage(time.Time{}, time.Time{}), nil); err != nil {
			t.Fatal(err)
		}
		if s := md.String(); strings.Contains(s, "Inf") || strings.Contains(s, "NaN") {
			t.Fatalf("report:\n%s", s)
		}
		families, err := a.metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, fam := range families {
			for _, m := range fam.GetMetric() {
				for _, v := range []float64{m.GetCounter().GetValue(), m.GetGauge().GetValue(), m.GetHistogram().GetSampleSum()} {
					if math.IsNaN(v) || math.IsInf(v, 0) {
						t.Fatalf("%s = %v", fam.GetName(), v)
					}
				}
			}
		}
	})
}
