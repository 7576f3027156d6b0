package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/monitorclient"
)

// logServer serves a log store holding job-a (two attempts, the first ended) and team/x.
func logServer(t *testing.T, token string) (*httptest.Server, *LogStore) {
	t.Helper()
	store, _, err := OpenLogStore(t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Append([]joblogs.Message{
		logMessage("job-a", 1, 1, joblogs.StreamStdout, "a1", "a2", "a3"),
		endOf("job-a", 1, 3),
		logMessage("job-a", 2, 1, joblogs.StreamStderr, "b1", "b2"),
		logMessage("team/x", 1, 1, joblogs.StreamStdout, "slash"),
	}); err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics()
	srv := NewServer(NewAggregator(metrics), metrics, func() bool { return true }, "x", zap.NewNop())
	srv.SetLogs(store, func() bool { return false })
	h := srv.Handler()
	if token != "" {
		h = RequireToken(h, token)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, store
}

// ndjson reads GET url's lines as attempt/seq/text.
func ndjson(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l joblogs.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a line: %s", sc.Bytes())
		}
		out = append(out, fmt.Sprintf("%d/%d/%s/%s", l.Attempt, l.Seq, l.Stream, l.Text))
	}
	return out
}

func TestAPIJobLogs(t *testing.T) {
	ts, _ := logServer(t, "")
	base := ts.URL + "/api/jobs/"
	for q, want := range map[string]string{
		"job-a/logs":                    "1/1/stdout/a1 1/2/stdout/a2 1/3/stdout/a3 2/1/stderr/b1 2/2/stderr/b2",
		"job-a/logs?attempt=2":          "2/1/stderr/b1 2/2/stderr/b2",
		"job-a/logs?attempt=1&after=1":  "1/2/stdout/a2 1/3/stdout/a3",
		"job-a/logs?limit=2":            "1/1/stdout/a1 1/2/stdout/a2",
		"job-a/logs?attempt=3":          "",
		"team%2Fx/logs":                 "1/1/stdout/slash",
		"job-a/logs?attempt=1&after=99": "",
	} {
		if got := strings.Join(ndjson(t, base+q), " "); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
	for q, code := range map[string]int{
		"job-a/logs?bogus=1":        400,
		"job-a/logs?after=1":        400, // after needs attempt
		"job-a/logs?attempt=0":      400,
		"job-a/logs?attempt=x":      400,
		"job-a/logs?limit=-1":       400,
		"job%20a/logs":              400, // not a job ID
		"job-none/logs":             404,
		"job-a/logs/stream?limit=1": 400,
		"job-a/logs/stream?x=1":     400,
	} {
		b := get(t, base+q, code)
		if !strings.Contains(string(b), `"error"`) {
			t.Errorf("%s: %d without an error: %s", q, code, b)
		}
	}
	var h Health
	getInto(t, ts.URL+"/healthz", &h)
	if h.LogQueue != "disconnected" {
		t.Errorf("healthz log_queue %q", h.LogQueue)
	}
}

// events collects a stream's events as name:id:attempt/seq.
func events(t *testing.T, c monitorclient.Client, path, lastID string) (<-chan string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan string, 100)
	go func() {
		c.Stream(ctx, path, lastID, func(ev monitorclient.Event) { //nolint:errcheck // ends with ctx
			var r struct {
				Attempt int   `json:"attempt"`
				Seq     int64 `json:"seq"`
				EndSeq  int64 `json:"end_seq"`
			}
			json.Unmarshal(ev.Data, &r) //nolint:errcheck
			out <- fmt.Sprintf("%s:%s:%d/%d", ev.Name, ev.ID, r.Attempt, r.Seq+r.EndSeq)
		})
	}()
	t.Cleanup(cancel)
	return out, cancel
}

func expect(t *testing.T, ch <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("event %s, want %s", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event, want %s", w)
		}
	}
}

func TestAPIJobLogStreamFollowsAndResumes(t *testing.T) {
	ts, store := logServer(t, "")
	c := monitorclient.New(ts.URL, "")
	all, _ := events(t, c, "/api/jobs/job-a/logs/stream", "")
	expect(t, all, "line:1:1/1", "line:2:1/2", "line:3:1/3", "end:4:1/3", "line:5:2/1", "line:6:2/2")
	only2, _ := events(t, c, "/api/jobs/job-a/logs/stream?attempt=2", "")
	expect(t, only2, "line:5:2/1", "line:6:2/2")
	// A client that reconnects after event 5 gets 6 and what follows.
	resumed, _ := events(t, c, "/api/jobs/job-a/logs/stream", "5")
	expect(t, resumed, "line:6:2/2")
	// A job without lines yet: the stream waits for them.
	later, _ := events(t, c, "/api/jobs/job-later/logs/stream", "")

	store.Append([]joblogs.Message{logMessage("job-a", 2, 3, joblogs.StreamStdout, "b3"), endOf("job-a", 2, 3), logMessage("job-later", 1, 1, joblogs.StreamStdout, "hi")})
	expect(t, all, "line:7:2/3", "end:8:2/3")
	expect(t, only2, "line:7:2/3", "end:8:2/3")
	expect(t, resumed, "line:7:2/3", "end:8:2/3")
	expect(t, later, "line:1:1/1")

	if _, err := c.Stream(context.Background(), "/api/jobs/job-a/logs/stream", "x", func(monitorclient.Event) {}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a bad Last-Event-ID: %v", err)
	}
}

func TestTokenGuardsTheAPIAndMetrics(t *testing.T) {
	const token = "unit-test-token-0123456789abcdef"
	ts, _ := logServer(t, token)
	do := func(path, auth string) int {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without WWW-Authenticate", path)
		}
		return resp.StatusCode
	}
	for _, path := range []string{"/api/stats", "/api/results", "/api/jobs/job-a/logs", "/api/events?results=0", "/metrics"} {
		for auth, want := range map[string]int{
			"":                          401,
			"Bearer wrong-token-000000": 401,
			"Bearer " + token + "x":     401,
			"Basic " + token:            401,
			"Bearer":                    401,
			"Bearer " + token:           200,
			"bearer " + token:           200,
		} {
			if path == "/api/events?results=0" && want == 200 {
				continue // a stream: answered 200 once it is open, checked below
			}
			if got := do(path, auth); got != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, got, want)
			}
		}
	}
	for _, open := range []string{"/", "/static/app.js", "/healthz"} {
		if got := do(open, ""); got != 200 {
			t.Errorf("%s without a token: %d, want 200 (no data)", open, got)
		}
	}
	c := monitorclient.New(ts.URL, token)
	ev, _ := events(t, c, "/api/jobs/job-a/logs/stream?attempt=1", "")
	expect(t, ev, "line:1:1/1")
	if err := monitorclient.New(ts.URL, "").GetJSON(context.Background(), "/api/stats", &Stats{}); err == nil || !strings.Contains(err.Error(), "MONITOR_TOKEN") {
		t.Errorf("client without a token: %v", err)
	}
	if err := monitorclient.New(ts.URL, "not-the-token-0000").GetJSON(context.Background(), "/api/stats", &Stats{}); err == nil || !strings.Contains(err.Error(), "not the monitor's") {
		t.Errorf("client with a wrong token: %v", err)
	}
}

func TestServeRefusesToExposeTheAPIWithoutAToken(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8000": true, "localhost:8000": true, "[::1]:8000": true, "127.0.0.2:0": true,
		"0.0.0.0:8000": false, ":8000": false, "[::]:8000": false, "10.1.2.3:8000": false, "monitor.example.com:8000": false,
	} {
		err := checkExposure(addr, "", false)
		if (err == nil) != ok {
			t.Errorf("%s without a token: %v", addr, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "--token") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("%s: not one line naming --token: %v", addr, err)
		}
		if checkExposure(addr, "a-token-of-enough-length", false) != nil || checkExposure(addr, "", true) != nil {
			t.Errorf("%s with a token or --insecure-no-auth is refused", addr)
		}
	}
	// Serve itself stops before it opens anything.
	err := Serve(context.Background(), Options{Addr: "0.0.0.0:0", StorePath: t.TempDir() + "/r.jsonl"}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "serves beyond this host") {
		t.Errorf("Serve on 0.0.0.0 without a token: %v", err)
	}
}
