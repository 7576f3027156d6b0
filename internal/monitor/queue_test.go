package monitor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
)

// queueServer is a monitor whose /api/queue asks the scheduler behind answer (nil: none set).
func queueServer(t *testing.T, answer http.HandlerFunc) string {
	t.Helper()
	agg := handAggregator()
	srv := NewServer(agg, agg.metrics, func() bool { return true }, "results/results.jsonl", zap.NewNop())
	if answer != nil {
		sched := httptest.NewServer(answer)
		t.Cleanup(sched.Close)
		srv.SetQueue(&QueueSource{URL: sched.URL})
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func snapshotNow() jobs.QueueSnapshot {
	now := time.Now().UTC().Truncate(time.Second)
	return jobs.QueueSnapshot{At: now, Jobs: []jobs.Prediction{
		{JobID: "job-c1", Queue: jobs.CPUQueue, Position: 1, Waiting: 2, Running: 1, Pollers: 1, PredictedStart: now.Add(time.Minute), PredictedEnd: now.Add(2 * time.Minute)},
		{JobID: "job-c2", Queue: jobs.CPUQueue, Position: 2, Waiting: 2, Running: 1, Pollers: 1, PredictedStart: now.Add(2 * time.Minute), PredictedEnd: now.Add(3 * time.Minute)},
		{JobID: "job-g1", Queue: jobs.GPUQueue, Position: 1, Waiting: 1, Pollers: 1, PredictedStart: now, PredictedEnd: now.Add(time.Second)},
		{JobID: "job-run", Queue: jobs.CPUQueue, Waiting: 2, Running: 1, Pollers: 1, PredictedEnd: now.Add(time.Minute)},
	}}
}

func serveJSON(v any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/queue" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v) //nolint:errcheck // test server
	}
}

func TestAPIQueuePassesOnTheSchedulersPredictions(t *testing.T) {
	want := snapshotNow()
	url := queueServer(t, serveJSON(want))

	var all QueueView
	getInto(t, url+"/api/queue", &all)
	if len(all.Jobs) != 4 || !all.At.Equal(want.At) || all.Source == "" {
		t.Fatalf("/api/queue: %+v", all)
	}
	for i := range want.Jobs {
		g, w := all.Jobs[i], want.Jobs[i]
		if g.JobID != w.JobID || g.Position != w.Position || !g.PredictedStart.Equal(w.PredictedStart) || !g.PredictedEnd.Equal(w.PredictedEnd) {
			t.Errorf("job %d: got %+v, want %+v", i, g, w)
		}
	}

	var gpu QueueView
	getInto(t, url+"/api/queue?queue=gpu_queue", &gpu)
	if len(gpu.Jobs) != 1 || gpu.Jobs[0].JobID != "job-g1" {
		t.Errorf("?queue=gpu_queue: %+v", gpu.Jobs)
	}
	var one QueueView
	getInto(t, url+"/api/queue?job_id=job-c2", &one)
	if len(one.Jobs) != 1 || one.Jobs[0].Position != 2 || one.Jobs[0].Waiting != 2 {
		t.Errorf("?job_id=job-c2: %+v", one.Jobs)
	}
	if b := get(t, url+"/api/queue?job_id=job-gone", http.StatusNotFound); !strings.Contains(string(b), "job job-gone is not on a queue") {
		t.Errorf("unknown job: %s", b)
	}
	if b := get(t, url+"/api/queue?queue=bogus", http.StatusBadRequest); !strings.Contains(string(b), `queue \"bogus\": want cpu_queue or gpu_queue`) {
		t.Errorf("bad queue: %s", b)
	}
	if b := get(t, url+"/api/queue?job=x", http.StatusBadRequest); !strings.Contains(string(b), "knows queue, job_id") {
		t.Errorf("unknown parameter: %s", b)
	}
}

// What the scheduler answers is read from the network: an answer that is not a valid snapshot
// is a 502 with the reason, never passed on.
func TestAPIQueueRefusesWhatIsNotAValidSnapshot(t *testing.T) {
	bad := snapshotNow()
	bad.Jobs[1].Position = 7
	far := snapshotNow()
	far.Jobs[0].PredictedEnd = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		answer http.HandlerFunc
		want   string
	}{
		{"position past the waiting count", serveJSON(bad), "jobs[1]: position 7"},
		{"an end in year 9999", serveJSON(far), "predicted_end 9999"},
		{"unknown fields", serveJSON(map[string]any{"at": time.Now(), "jobs": []any{}, "extra": 1}), `unknown field \"extra\"`},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>")) }, "not a queue snapshot"}, //nolint:errcheck // test server
		{"an error", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "Temporal unreachable", http.StatusServiceUnavailable)
		},
			"answered 503 Service Unavailable: Temporal unreachable"},
		{"a huge answer", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"at":"` + time.Now().UTC().Format(time.RFC3339) + `","jobs":[` + strings.Repeat(" ", maxQueueBody) + `]}`)) //nolint:errcheck // test server
		}, "over 16777216 bytes"},
	}
	for _, c := range cases {
		url := queueServer(t, c.answer)
		b := get(t, url+"/api/queue", http.StatusBadGateway)
		if !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %s, want an error with %q", c.name, b, c.want)
		}
	}

	var calls atomic.Int32
	counted := queueServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1); serveJSON(snapshotNow())(w, r) })
	get(t, counted+"/api/queue?queue=cpu_queue", http.StatusOK)
	if calls.Load() != 1 {
		t.Errorf("scheduler asked %d times for one request", calls.Load())
	}
}

func TestAPIQueueWithoutASchedulerSaysHowToSetOne(t *testing.T) {
	url := queueServer(t, nil)
	b := get(t, url+"/api/queue", http.StatusServiceUnavailable)
	if !strings.Contains(string(b), "--scheduler-url") {
		t.Errorf("/api/queue without a scheduler: %s", b)
	}
}

func TestParseSchedulerURL(t *testing.T) {
	for in, want := range map[string]string{"http://127.0.0.1:8091": "http://127.0.0.1:8091", "https://sched:8091/": "https://sched:8091"} {
		if got, err := ParseSchedulerURL(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"127.0.0.1:8091", "ftp://x", "http://", "http://h:1/api/queue", "http://h:1?x=1"} {
		if _, err := ParseSchedulerURL(in); err == nil || !strings.Contains(err.Error(), "--scheduler-url") {
			t.Errorf("%s: error %v", in, err)
		}
	}
}
