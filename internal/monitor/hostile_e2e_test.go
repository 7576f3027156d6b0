package monitor

// Issue 9's hostile results, published straight to a real result queue that a real `monitor
// serve` consumes (GPUJOBS_E2E=1, like the other broker tests): each is dead-lettered with its
// reason, and the API, tail, the report and the dashboard keep telling the truth about the valid
// results, also after a restart over a store that holds such lines.

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

func TestHostileResultsAreDeadLetteredAndTheMonitorKeepsWorking(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	bin := monitorBinary(t)
	chromium := chromiumPath(t)
	store := filepath.Join(t.TempDir(), "results.jsonl")
	mon := startServe(t, bin, rc, store)

	valid := fixtureResults(41, 105, t0)
	cases := hostileCases("e2", time.Now())
	rejected, malformed := 0, 0
	var bodies [][]byte
	for _, r := range valid[:20] {
		bodies = append(bodies, mustJSON(r))
	}
	for _, c := range cases {
		bodies = append(bodies, c.body)
		if c.malformed {
			malformed++
		} else {
			rejected++
		}
	}
	for _, r := range valid[20:40] {
		bodies = append(bodies, mustJSON(r))
	}
	publish(t, rc, bodies...)
	dlq := rabbit.DeadLetterQueue(rc.Queue)
	testutil.WaitFor(t, "every message settled", 60*time.Second, func() bool {
		return queueDepth(t, rc.URL, rc.Queue) == 0 && mon.health(t).Results+queueDepth(t, rc.URL, dlq) >= len(bodies)
	})
	t.Logf("published %d valid results and %d hostile messages (%d invalid results, %d not results)", 40, len(cases), rejected, malformed)

	want := NewAggregator(nil)
	want.Add(valid[:40]...)
	checkAPI := func(stage string, rejectedAtLoad int) {
		t.Helper()
		var got Stats
		if err := getJSONErr(mon.api+"/api/stats", &got); err != nil {
			t.Fatalf("%s: /api/stats: %v", stage, err)
		}
		tt := got.Totals
		if tt.Results != len(want.results) || tt.Completed+tt.Failed+tt.Canceled != tt.Results ||
			tt.Rejected != int64(rejected) || tt.Malformed != int64(malformed) || tt.RejectedAtLoad != rejectedAtLoad {
			t.Errorf("%s: totals %+v: want %d results (= completed + failed + canceled), %d rejected, %d malformed, %d rejected at load",
				stage, tt, len(want.results), rejected, malformed, rejectedAtLoad)
		}
		var gotSpeed Speedups
		if err := getJSONErr(mon.api+"/api/speedup", &gotSpeed); err != nil {
			t.Fatalf("%s: /api/speedup: %v", stage, err)
		}
		ws := want.Stats()
		for _, x := range []struct {
			name      string
			got, want any
		}{
			{"groups", got.Groups, ws.Groups}, {"failures", got.Failures, ws.Failures},
			{"throughput series", got.Throughput.Series, ws.Throughput.Series}, {"speedup", gotSpeed.JobTypes, want.Speedup().JobTypes},
		} {
			if g, w := string(mustJSON(x.got)), string(mustJSON(x.want)); g != w {
				t.Errorf("%s: %s differ from those of the valid results:\n got %s\nwant %s", stage, x.name, g, w)
			}
		}
		if got.Throughput.Overall != ws.Throughput.Overall {
			t.Errorf("%s: overall throughput %v, valid results' %v", stage, got.Throughput.Overall, ws.Throughput.Overall)
		}
		resp, err := httpClient.Get(mon.api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "gpujobs_") && (strings.Contains(line, `status="bogus"`) || strings.Contains(line, `worker_type="tpu"`) ||
				strings.HasSuffix(line, "Inf") || strings.HasSuffix(line, "NaN")) {
				t.Errorf("%s: /metrics: %s", stage, line)
			}
		}
		if !strings.Contains(string(b), "\ngpujobs_monitor_rejected_total "+strconv.Itoa(rejected)+"\n") {
			t.Errorf("%s: /metrics lacks gpujobs_monitor_rejected_total %d", stage, rejected)
		}
	}
	checkAPI("first run", 0)

	// Each hostile message is in the dead-letter queue once, with why.
	byBody := map[string]int{}
	for i, c := range cases {
		byBody[string(c.body)] = i
	}
	seen := make([]int, len(cases))
	for _, d := range testutil.Drain(t, rc.URL, dlq) {
		i, ok := byBody[string(d.Body)]
		if !ok {
			t.Errorf("dead letter that was not published as hostile: %.200s", d.Body)
			continue
		}
		seen[i]++
		c := cases[i]
		kind := "rejected"
		if c.malformed {
			kind = "malformed"
		}
		if r, _ := d.Headers[RejectReasonHeader].(string); !strings.Contains(r, c.field) || d.Headers[RejectKindHeader] != kind || d.Headers[RejectQueueHeader] != rc.Queue {
			t.Errorf("%s: dead letter headers %v: want kind %s and a reason naming %q", c.name, d.Headers, kind, c.field)
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("%s: dead-lettered %d times, want once", cases[i].name, n)
		}
	}

	tailAndReport := func(stage string, wantSkipped int) {
		t.Helper()
		out, errOut, err := runBin(bin, "tail", "--api", mon.api, "--follow=false")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		summary := lines[len(lines)-1]
		if err != nil || len(lines) != len(want.results)+1 || !strings.HasPrefix(summary, "== "+strconv.Itoa(len(want.results))+" results: ") ||
			!strings.Contains(summary, strconv.Itoa(malformed)+" malformed and "+strconv.Itoa(rejected)+" invalid dead-lettered") {
			t.Errorf("%s: monitor tail: %v %s\n%s", stage, err, errOut, out)
		}
		if wantSkipped > 0 && !strings.Contains(summary, strconv.Itoa(wantSkipped)+" store lines skipped") {
			t.Errorf("%s: tail's summary does not count the skipped store lines: %s", stage, summary)
		}
		follow := followTail(t, bin, mon.api, "== "+strconv.Itoa(len(want.results))+" results")
		if n := strings.Count(follow, "\njob-") + strings.Count(follow[:min(4, len(follow))], "job-"); n != 10 {
			t.Errorf("%s: monitor tail (following) printed %d results, want the last 10:\n%s", stage, n, follow)
		}
		dir := t.TempDir()
		out, errOut, err = runBin(filepath.Join(filepath.Dir(bin), "monitor-report"), "--store", store, "--out", dir)
		md, _ := os.ReadFile(filepath.Join(dir, ReportMarkdown))
		if err != nil || !strings.HasPrefix(out, strconv.Itoa(len(want.results))+" results from ") || bytes.Contains(md, []byte("Inf")) || bytes.Contains(md, []byte("NaN")) {
			t.Errorf("%s: monitor-report: %v\n%s%s\n%s", stage, err, out, errOut, md)
		}
		if wantSkipped > 0 && strings.Count(errOut, "skipped line ") != min(wantSkipped, maxSkippedReported) {
			t.Errorf("%s: monitor-report does not list the skipped lines:\n%s", stage, errOut)
		}
	}
	tailAndReport("first run", 0)

	// An older monitor stored hostile results: the restarted monitor loads the store, skips and
	// counts those lines, restores its counters, and goes on consuming.
	mon.kill()
	f, err := os.OpenFile(store, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		f.Write(append(append([]byte(nil), c.body...), '\n')) //nolint:errcheck // checked by the load
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mon = startServe(t, bin, rc, store)
	if h := mon.health(t); h.Results != 40 || h.RejectedAtLoad != len(cases) {
		t.Errorf("after the restart: healthz %+v, want 40 results and %d lines rejected at load", h, len(cases))
	}
	publish(t, rc, mustJSON(valid[40]))
	want.Add(valid[40])
	testutil.WaitFor(t, "a result published after the restart", 30*time.Second, func() bool { return mon.health(t).Results == 41 })
	checkAPI("after the restart", len(cases))
	tailAndReport("after the restart", len(cases))
	if b, _ := os.ReadFile(mon.log); !bytes.Contains(b, []byte("store line skipped: not a valid result")) {
		t.Error("the restarted monitor does not log the lines it skipped")
	}

	// The dashboard, in a browser, shows the same numbers. The proxy ends event streams after
	// 300 ms, as the dashboard tests' server does: headless Chromium waits for open fetches.
	target, _ := url.Parse(mon.api)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/events" {
			ctx, cancel := context.WithTimeout(r.Context(), 300*time.Millisecond)
			defer cancel()
			r = r.WithContext(ctx)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer ts.Close()
	doc, err := html.Parse(bytes.NewReader(headless(t, chromium, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	var stats Stats
	if err := getJSONErr(mon.api+"/api/stats", &stats); err != nil {
		t.Fatal(err)
	}
	body := find(doc, func(n *html.Node) bool { return n.Data == "body" })
	if attr(body, "data-loaded") != "1" || attr(body, "data-results") != "41" {
		t.Fatalf("dashboard not rendered: data-loaded=%q data-results=%q", attr(body, "data-loaded"), attr(body, "data-results"))
	}
	tt := stats.Totals
	for id, want := range map[string]float64{
		"kpi-results": float64(tt.Results), "kpi-completed": float64(tt.Completed), "kpi-failed": float64(tt.Failed),
		"kpi-malformed": float64(tt.Malformed), "kpi-rejected": float64(tt.Rejected), "kpi-rejected-at-load": float64(tt.RejectedAtLoad),
		"kpi-throughput-overall": stats.Throughput.Overall,
	} {
		if n := byID(doc, id); n == nil || num(t, attr(n, "data-value")) != want {
			t.Errorf("dashboard #%s = %q, API %v", id, attr(n, "data-value"), want)
		}
	}
	if rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-group") != "" }); len(rows) != len(stats.Groups) {
		t.Errorf("dashboard shows %d groups, the API %d", len(rows), len(stats.Groups))
	}
}

// runBin runs a command and returns its stdout and stderr.
func runBin(bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// followTail runs `monitor tail` (following the stream) until its output holds want, and
// returns the output.
func followTail(t *testing.T, bin, api, want string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "tail", "--api", api, "--summary-every", "0")
	w := &lockedWriter{w: &out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	testutil.WaitFor(t, "monitor tail to print "+want, 20*time.Second, func() bool {
		select {
		case err = <-done:
			return true // exited: judged below
		default:
		}
		return strings.Contains(w.String(), want)
	})
	if err != nil || cmd.ProcessState != nil {
		t.Errorf("monitor tail exited: %v\n%s", err, w.String())
		return w.String()
	}
	cmd.Process.Kill() //nolint:errcheck // it follows until stopped
	<-done
	return w.String()
}

// lockedWriter is written by a process's output copier and read by the test.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
