package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/jobs"
)

func result(id, worker string, pt float64) jobs.Result {
	end := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	return jobs.Result{JobID: id, JobType: "vector_addition", Status: jobs.StatusCompleted, WorkerType: worker,
		Device: "AMD EPYC 9B14, 2 threads", ProcessingTime: pt, Metrics: map[string]float64{"gbps": 21.5},
		StartTime: end.Add(-time.Second), EndTime: end}
}

func fakeMonitor(t *testing.T) (*httptest.Server, *monitor.Aggregator, *monitor.Server) {
	agg := monitor.NewAggregator(nil)
	agg.Add(result("job-00000000000a", "cpu", 0.25), result("job-00000000000b", "gpu", 0.002))
	srv := monitor.NewServer(agg, nil, nil, "x", zap.NewNop())
	srv.SummaryEvery = 0
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, agg, srv
}

// syncBuffer is written by the command's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runTail(ctx context.Context, out *syncBuffer, args ...string) error {
	cmd := newRoot()
	cmd.SetArgs(append([]string{"tail"}, args...))
	cmd.SetOut(out)
	cmd.SetErr(out)
	return cmd.ExecuteContext(ctx)
}

func TestTailWithoutFollowPrintsStoredResultsAndASummary(t *testing.T) {
	ts, _, _ := fakeMonitor(t)
	var out syncBuffer
	if err := runTail(context.Background(), &out, "--api", ts.URL, "--follow=false"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "job-00000000000a  vector_addition  completed cpu  AMD EPYC 9B14, 2 threads") ||
		!strings.Contains(lines[0], " 250ms  21.5 GB/s") || !strings.HasPrefix(lines[1], "job-00000000000b") ||
		!strings.HasPrefix(lines[2], "== 2 results: 2 completed, 0 failed, 0 canceled | GPU 1, CPU 1 (0 fallbacks)") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestTailFollowsNewResultsAsJSON(t *testing.T) {
	ts, agg, srv := fakeMonitor(t)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runTail(ctx, &out, "--api", ts.URL, "--json", "-n", "1") }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the last stored result", func() bool { return strings.Contains(out.String(), "job-00000000000b") })
	agg.Add(result("job-00000000000c", "gpu", 0.003))
	srv.Notify()
	waitFor(t, "the new result", func() bool { return strings.Contains(out.String(), "job-00000000000c") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the cleanup
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the last stored result and the new one, got:\n%s", out.String())
	}
	for _, l := range lines {
		var r jobs.Result
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.JobType != "vector_addition" {
			t.Errorf("not a result JSON line: %s", l)
		}
	}
}

func TestTailFollowPrintsASummaryLine(t *testing.T) {
	ts, _, _ := fakeMonitor(t)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runTail(ctx, &out, "--api", ts.URL, "--summary-every", "0") }()
	waitFor(t, "the summary line", func() bool { return strings.Contains(out.String(), "== 2 results") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTailSaysWhenNoMonitorRuns(t *testing.T) {
	var out syncBuffer
	err := runTail(context.Background(), &out, "--api", "http://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "is monitor serve running?") {
		t.Errorf("err %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A monitor that answers with something other than the JSON expected (an old monitor's empty
// 200, a proxy's HTML page) gets a one-line error naming the URL and what came back, not "EOF".
func TestTailSaysWhatCameBackWhenTheAPIFails(t *testing.T) {
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"an empty 200", "", http.StatusOK, "200 OK, but the body is not the JSON expected (EOF): got an empty body"},
		{"an HTML page", "<html>\n<body>Bad gateway</body></html>", http.StatusOK, `got "<html> <body>Bad gateway</body></html>"`},
		{"a 500", "{\"error\": \"cannot encode the response\"}\n", http.StatusInternalServerError, `500 Internal Server Error: {"error": "cannot encode the response"}`},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.code)
			io.WriteString(w, c.body) //nolint:errcheck
		}))
		var out syncBuffer
		err := runTail(context.Background(), &out, "--api", ts.URL, "--follow=false")
		ts.Close()
		if err == nil || !strings.Contains(err.Error(), "GET "+ts.URL+"/api/results") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming the URL and %q", c.name, err, c.want)
		}
	}
}

func TestTailSummaryCountsWhatWasNotCounted(t *testing.T) {
	ts, agg, _ := fakeMonitor(t)
	agg.CountDuplicates(2)
	agg.CountMalformed()
	agg.CountRejected()
	agg.SetRejectedAtLoad(4)
	var out syncBuffer
	if err := runTail(context.Background(), &out, "--api", ts.URL, "--follow=false"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 2 duplicates ignored, 1 malformed and 1 invalid dead-lettered | 4 store lines skipped\n") {
		t.Errorf("output:\n%s", out.String())
	}
}
