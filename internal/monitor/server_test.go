package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
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

func handServer(t *testing.T) (*httptest.Server, *Aggregator, *Server) {
	t.Helper()
	agg := handAggregator()
	srv := NewServer(agg, agg.metrics, func() bool { return true }, "results/results.jsonl", zap.NewNop())
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, agg, srv
}

func get(t *testing.T, url string, wantCode int) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, wantCode)
	}
	return b
}

func getInto(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal(get(t, url, http.StatusOK), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// The field names are the API's contract (README, Monitor section): read them as plain maps.
func TestAPIStatsFieldNamesAndHandComputedValues(t *testing.T) {
	ts, _, _ := handServer(t)
	var s map[string]any
	getInto(t, ts.URL+"/api/stats", &s)
	totals := s["totals"].(map[string]any)
	for k, want := range map[string]float64{"results": 8, "completed": 6, "failed": 2, "canceled": 0, "gpu_runs": 4, "cpu_runs": 3, "fallbacks": 1, "duplicates": 0, "malformed": 0} {
		if totals[k] != want {
			t.Errorf("totals.%s = %v, want %v", k, totals[k], want)
		}
	}
	tp := s["throughput"].(map[string]any)
	if tp["overall_per_sec"] != 0.4 || tp["first_start"] != "2026-11-26T10:00:00Z" || tp["last_end"] != "2026-11-26T10:00:20Z" {
		t.Errorf("throughput %v", tp)
	}
	if !near(tp["last_minute_per_sec"].(float64), 5.0/60) {
		t.Errorf("last_minute_per_sec %v", tp["last_minute_per_sec"])
	}
	series := tp["series"].(map[string]any)
	for _, k := range []string{"start", "bucket_seconds", "gpu", "cpu", "failed"} {
		if _, ok := series[k]; !ok {
			t.Errorf("throughput.series lacks %s", k)
		}
	}
	groups := s["groups"].([]any)
	g := groups[0].(map[string]any) // matrix_multiply/cpu sorts first
	if g["job_type"] != "matrix_multiply" || g["worker_type"] != "cpu" || g["results"] != 3.0 || g["completed"] != 3.0 || g["failed"] != 0.0 || g["canceled"] != 0.0 || g["fallbacks"] != 1.0 {
		t.Errorf("group 0 %v", g)
	}
	pt := g["processing_time"].(map[string]any)
	for k, want := range map[string]float64{"avg": 7.0 / 3, "min": 1, "max": 4, "p50": 2, "p95": 3.8} {
		if !near(pt[k].(float64), want) {
			t.Errorf("processing_time.%s = %v, want %v", k, pt[k], want)
		}
	}
	if r := g["rate"].(map[string]any); !near(r["mean"].(float64), 35.0/3) || r["unit"] != "GFLOP/s" {
		t.Errorf("rate %v", r)
	}
	if f := s["failures"].([]any); len(f) != 2 || f[0].(map[string]any)["error_type"] != "InvalidParams" || f[0].(map[string]any)["count"] != 1.0 {
		t.Errorf("failures %v", f)
	}
	if f := s["fallbacks"].([]any); len(f) != 1 || f[0].(map[string]any)["reason"] != "no GPU worker polling gpu_queue" || f[0].(map[string]any)["job_type"] != "matrix_multiply" {
		t.Errorf("fallbacks %v", f)
	}
	if _, ok := s["generated_at"]; !ok {
		t.Error("no generated_at")
	}
}

func TestAPISpeedup(t *testing.T) {
	ts, _, _ := handServer(t)
	var s map[string]any
	getInto(t, ts.URL+"/api/speedup", &s)
	jts := s["job_types"].([]any)
	mm := jts[0].(map[string]any)
	if mm["job_type"] != "matrix_multiply" || !near(mm["speedup"].(float64), 15) || !near(mm["cpu_mean_time"].(float64), 3) ||
		!near(mm["gpu_mean_time"].(float64), 0.2) || mm["uncompared"] != 1.0 {
		t.Errorf("matrix_multiply %v", mm)
	}
	c := mm["compared"].([]any)[0].(map[string]any)
	if p := c["params"].(map[string]any); p["size"] != 512.0 || p["iterations"] != 2.0 || c["cpu_runs"] != 2.0 || c["gpu_runs"] != 2.0 || !near(c["speedup"].(float64), 15) {
		t.Errorf("comparison %v", c)
	}
	if va := jts[1].(map[string]any); va["speedup"] != 0.0 || len(va["compared"].([]any)) != 0 {
		t.Errorf("vector_addition %v", va)
	}
}

func TestAPIResultsFiltersAndRejectsBadParameters(t *testing.T) {
	ts, _, _ := handServer(t)
	var p ResultsPage
	getInto(t, ts.URL+"/api/results?job_type=matrix_multiply&worker_type=cpu&status=completed&limit=2", &p)
	if p.Matched != 3 || p.Count != 2 || p.Results[0].JobID != "job-000000000005" {
		t.Errorf("page %+v", p)
	}
	getInto(t, ts.URL+"/api/results?order=asc&limit=0", &p)
	if p.Matched != 8 || p.Count != 8 || p.Results[0].JobID != "job-000000000001" || p.Results[0].Fallback != "" {
		t.Errorf("all, oldest first: %d %d %v", p.Matched, p.Count, ids(p.Results))
	}
	getInto(t, ts.URL+"/api/results", &p)
	if p.Count != 8 || p.Results[0].JobID != "job-000000000008" {
		t.Errorf("default: newest first: %v", ids(p.Results))
	}
	var raw map[string]any
	getInto(t, ts.URL+"/api/results?limit=1", &raw)
	r := raw["results"].([]any)[0].(map[string]any)
	for _, k := range []string{"job_id", "job_type", "status", "error_type", "error", "submit_time", "end_time"} {
		if _, ok := r[k]; !ok {
			t.Errorf("result lacks %s: %v", k, r)
		}
	}
	for _, q := range []string{"limit=-1", "limit=x", "status=done", "worker_type=tpu", "order=up", "jobtype=x"} {
		b := get(t, ts.URL+"/api/results?"+q, http.StatusBadRequest)
		if !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s: %s", q, b)
		}
	}
	get(t, ts.URL+"/api/stats?x=1", http.StatusBadRequest)
}

func TestAPIFailedAndHealth(t *testing.T) {
	ts, _, _ := handServer(t)
	var f Failed
	getInto(t, ts.URL+"/api/failed", &f)
	if f.Matched != 2 || f.Count != 2 || f.Results[0].JobID != "job-000000000008" || len(f.Failures) != 2 {
		t.Errorf("failed %+v", f)
	}
	getInto(t, ts.URL+"/api/failed?job_type=matrix_multiply", &f)
	if f.Matched != 0 || len(f.Results) != 0 || len(f.Failures) != 0 {
		t.Errorf("failed matrix_multiply %+v", f)
	}
	var h map[string]any
	getInto(t, ts.URL+"/healthz", &h)
	if h["status"] != "ok" || h["rabbitmq"] != "connected" || h["results"] != 8.0 || h["store"] != "results/results.jsonl" {
		t.Errorf("healthz %v", h)
	}
}

func TestMetricsParseAsPrometheusText(t *testing.T) {
	ts, agg, _ := handServer(t)
	agg.CountDuplicates(2)
	agg.CountMalformed()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(get(t, ts.URL+"/metrics", http.StatusOK))))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	value := func(name string, labels map[string]string) (float64, uint64) {
		t.Helper()
		f := families[name]
		if f == nil {
			t.Fatalf("no %s", name)
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.Counter.GetValue(), 0
			case dto.MetricType_HISTOGRAM:
				return m.Histogram.GetSampleSum(), m.Histogram.GetSampleCount()
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0, 0
	}
	l := func(jt, wt, st string) map[string]string {
		return map[string]string{"job_type": jt, "worker_type": wt, "status": st}
	}
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{l("matrix_multiply", "cpu", "completed"), 3},
		{l("matrix_multiply", "gpu", "completed"), 2},
		{l("vector_addition", "gpu", "completed"), 1},
		{l("vector_addition", "gpu", "failed"), 1},
		{l("vector_addition", "none", "failed"), 1},
	} {
		if v, _ := value("gpujobs_results_total", c.labels); v != c.want {
			t.Errorf("gpujobs_results_total%v = %v, want %v", c.labels, v, c.want)
		}
	}
	if sum, n := value("gpujobs_processing_seconds", l("matrix_multiply", "cpu", "completed")); n != 3 || !near(sum, 7) {
		t.Errorf("processing histogram: %d observations summing to %v, want 3 and 7", n, sum)
	}
	if v, _ := value("gpujobs_fallbacks_total", map[string]string{"job_type": "matrix_multiply"}); v != 1 {
		t.Errorf("fallbacks %v", v)
	}
	if v, _ := value("gpujobs_monitor_duplicates_total", nil); v != 2 {
		t.Errorf("duplicates %v", v)
	}
	if v, _ := value("gpujobs_monitor_malformed_total", nil); v != 1 {
		t.Errorf("malformed %v", v)
	}
}

// sseReader reads events from a stream for a test.
type sseReader struct {
	sc     *bufio.Scanner
	cancel func()
}

func openSSE(t *testing.T, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return &sseReader{sc: bufio.NewScanner(resp.Body), cancel: cancel}
}

// next returns the next event's name, id and data; a stuck stream fails the test by timeout.
func (s *sseReader) next(t *testing.T) (name, id, data string) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, s.cancel)
	defer timer.Stop()
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "" && name != "":
			return name, id, data
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	t.Fatalf("stream ended waiting for an event: %v", s.sc.Err())
	return
}

func TestEventsStreamReplaysThenFollows(t *testing.T) {
	ts, agg, srv := handServer(t)
	srv.SummaryEvery = 0
	s := openSSE(t, ts.URL+"/api/events?replay=2")
	for _, want := range []string{"7", "8"} {
		name, id, data := s.next(t)
		var r jobs.Result
		if name != "result" || id != want || json.Unmarshal([]byte(data), &r) != nil || r.JobID != "job-00000000000"+want {
			t.Fatalf("event %s id %s data %s, want result %s", name, id, data, want)
		}
	}
	name, _, data := s.next(t)
	var sum Summary
	if name != "summary" || json.Unmarshal([]byte(data), &sum) != nil || sum.Results != 8 || sum.GPURuns != 4 || sum.ThroughputOverall != 0.4 {
		t.Fatalf("event %s %s, want the summary", name, data)
	}

	agg.Add(jobs.Result{JobID: "job-000000000009", JobType: "vector_addition", Status: jobs.StatusCanceled, EndTime: at(30)})
	srv.Notify()
	if name, id, data := s.next(t); name != "result" || id != "9" || !strings.Contains(data, "job-000000000009") {
		t.Fatalf("live event %s %s %s", name, id, data)
	}
	if name, _, data := s.next(t); name != "summary" || !strings.Contains(data, `"results":9`) || !strings.Contains(data, `"canceled":1`) {
		t.Fatalf("live summary %s %s", name, data)
	}

	// A client that reconnects resumes after the last id it saw.
	s2 := openSSE(t, ts.URL+"/api/events?after=8")
	if name, id, _ := s2.next(t); name != "result" || id != "9" {
		t.Fatalf("resumed at %s %s, want result 9", name, id)
	}
	// Summaries only, for the dashboard.
	s3 := openSSE(t, ts.URL+"/api/events?results=0&replay=5")
	if name, _, _ := s3.next(t); name != "summary" {
		t.Fatalf("results=0 sent %s", name)
	}
}

func TestDashboardIsServedFromTheBinary(t *testing.T) {
	ts, _, _ := handServer(t)
	page := string(get(t, ts.URL+"/", http.StatusOK))
	for _, want := range []string{`id="kpi-results"`, `/static/app.js`, `/static/style.css`} {
		if !strings.Contains(page, want) {
			t.Errorf("index lacks %s", want)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page must not load anything from elsewhere (no CDN)")
	}
	for _, p := range []string{"/static/app.js", "/static/style.css"} {
		if b := get(t, ts.URL+p, http.StatusOK); len(b) < 100 {
			t.Errorf("%s: %d bytes", p, len(b))
		}
	}
	get(t, ts.URL+"/nope", http.StatusNotFound)
}

// Hostile results handed to the aggregator directly (as by a program that bypasses the
// consumer's checks) leave every endpoint answering with what the valid results say.
func TestHostileResultsLeaveTheAPIWorking(t *testing.T) {
	ts, agg, _ := handServer(t)
	n := 0
	for _, c := range hostileCases("ab", at(65)) {
		var r jobs.Result
		if json.Unmarshal(c.body, &r) == nil {
			agg.Add(r)
			n++
		}
	}
	if n < 20 {
		t.Fatalf("only %d hostile results decode", n)
	}
	var s map[string]any
	getInto(t, ts.URL+"/api/stats", &s)
	totals := s["totals"].(map[string]any)
	if totals["results"] != 8.0 || totals["completed"] != 6.0 || totals["failed"] != 2.0 || totals["canceled"] != 0.0 {
		t.Errorf("totals %v: want the hand set's 8 results (6 completed, 2 failed) only", totals)
	}
	if tp := s["throughput"].(map[string]any); tp["overall_per_sec"] != 0.4 || tp["last_end"] != "2026-11-26T10:00:20Z" {
		t.Errorf("throughput %v: want the hand set's", tp)
	}
	for _, g := range s["groups"].([]any) {
		if pt, ok := g.(map[string]any)["processing_time"].(map[string]any); ok && pt["max"].(float64) > 4 {
			t.Errorf("group %v: a hostile time got in", g)
		}
	}
	var sp map[string]any
	getInto(t, ts.URL+"/api/speedup", &sp)
	if mm := sp["job_types"].([]any)[0].(map[string]any); !near(mm["speedup"].(float64), 15) {
		t.Errorf("speedup %v, want the hand set's 15", mm)
	}
	var page map[string]any
	getInto(t, ts.URL+"/api/results?limit=0", &page)
	getInto(t, ts.URL+"/api/failed", &page)
	metrics := string(get(t, ts.URL+"/metrics", http.StatusOK))
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "gpujobs_") && (strings.Contains(line, `status="bogus"`) || strings.Contains(line, `worker_type="tpu"`) ||
			strings.HasSuffix(line, "Inf") || strings.HasSuffix(line, "NaN")) {
			t.Errorf("/metrics: %s", line)
		}
	}
	s2 := openSSE(t, ts.URL+"/api/events?results=0")
	if name, _, data := s2.next(t); name != "summary" || !strings.Contains(data, `"results":8,`) {
		t.Errorf("summary event %s %s", name, data)
	}
}

// A value that cannot be encoded is a 500 with a JSON error, never a 200 with an empty body.
func TestAResponseThatCannotBeEncodedIsA500(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, http.StatusOK, map[string]float64{"x": math.Inf(1)}) //nolint:errcheck // the response is the test
	var body map[string]string
	if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &body) != nil || !strings.Contains(body["error"], "unsupported value") {
		t.Errorf("%d %q, want 500 with a JSON error", rec.Code, rec.Body.String())
	}
	var ev strings.Builder
	srv := NewServer(NewAggregator(nil), nil, nil, "x", zap.NewNop())
	srv.event(&ev, "7", "result", map[string]float64{"x": math.NaN()})
	if !strings.HasPrefix(ev.String(), "id: 7\nevent: monitor_error\ndata: {\"error\":") {
		t.Errorf("event %q, want a monitor_error event with the id", ev.String())
	}
}

func TestHealthzAndMetricsRejectUnknownParameters(t *testing.T) {
	ts, _, _ := handServer(t)
	for _, u := range []string{"/healthz?verbose=1", "/metrics?format=json", "/api/speedup?x=1"} {
		if b := get(t, ts.URL+u, http.StatusBadRequest); !strings.Contains(string(b), "takes no parameters") {
			t.Errorf("%s: %s", u, b)
		}
	}
	get(t, ts.URL+"/healthz", http.StatusOK)
	get(t, ts.URL+"/metrics", http.StatusOK)
}

// Kinds are open, so a well-formed job type without results is an empty answer that says so;
// a name no kind can have is a 400.
func TestAPIJobTypeFilter(t *testing.T) {
	ts, _, _ := handServer(t)
	for _, q := range []string{"/api/results?job_type=Bogus%20Kind", "/api/failed?job_type=a-b", "/api/results?job_type=" + strings.Repeat("x", 65)} {
		b := get(t, ts.URL+q, http.StatusBadRequest)
		if !strings.Contains(string(b), "job_type") || !strings.Contains(string(b), "lowercase letters, digits and _") {
			t.Errorf("%s: %s", q, b)
		}
	}
	for _, q := range []string{"/api/results?job_type=bogus", "/api/failed?job_type=bogus"} {
		var p map[string]any
		getInto(t, ts.URL+q, &p)
		types, _ := p["job_types"].([]any)
		if p["matched"] != 0.0 || len(p["results"].([]any)) != 0 || len(types) != 2 || types[0] != "matrix_multiply" ||
			p["note"] != `no results of job_type "bogus"; the monitor has results of: matrix_multiply, vector_addition` {
			t.Errorf("%s: %v", q, p)
		}
	}
	var p map[string]any
	getInto(t, ts.URL+"/api/results?job_type=vector_addition", &p)
	if p["matched"] != 3.0 || p["note"] != nil || len(p["job_types"].([]any)) != 2 {
		t.Errorf("a job type with results: %v", p)
	}
}
