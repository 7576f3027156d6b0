package monitor

// Job logs end to end: Writers publishing to the real RabbitMQ, consumed by a real
// `monitor serve` (GPUJOBS_E2E=1; the queues are the test's own).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

func logQueueOf(rc config.RabbitMQ) config.RabbitMQ {
	rc.Queue += "_logs" // as startServe passes it
	return rc
}

// storedLog reads a job's log from the monitor's API (nil while it has none).
func storedLog(t *testing.T, api, job, token string) []joblogs.Line {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, api+"/api/jobs/"+job+"/logs", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil // the monitor is restarting
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET logs of %s: %s", job, resp.Status)
	}
	var out []joblogs.Line
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l joblogs.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	if sc.Err() != nil {
		return nil // cut by a kill
	}
	return out
}

// metricValue reads one series of the monitor's /metrics.
func metricValue(t *testing.T, api, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestLogsSurviveAMonitorKilledMidway: 4 jobs write 25,000 lines each while a real monitor
// stores them; the monitor is SIGKILLed once it holds about a third, the jobs go on writing
// (the broker keeps their lines), and a monitor restarted on the same store ends up with every
// line of every job once, in order: lost 0, duplicates stored 0.
func TestLogsSurviveAMonitorKilledMidway(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	bin := monitorBinary(t)
	store := filepath.Join(t.TempDir(), "results.jsonl")
	flags := []string{"--log-prefetch", "8"} // batches of 4 messages: many fsync-then-ack steps for the kill to fall between
	mon := startServe(t, bin, rc, store, flags...)

	p := joblogs.NewPublisher(logQueueOf(rc), "logs-e2e", zaptest.NewLogger(t))
	defer p.Close()
	const jobsN, n = 4, 25_000
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for j := range jobsN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := p.Job(fmt.Sprintf("job-kill%08d", j), 1, joblogs.Limits{})
			for i := 1; i <= n; i++ {
				w.Write(joblogs.StreamStdout, fmt.Sprintf("job %d line %d", j, i))
				if i == n/2 {
					<-killed // the second half is written while the monitor is down
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := w.Close(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	testutil.WaitFor(t, "the monitor to store a third of job 0's lines", time.Minute, func() bool {
		return len(storedLog(t, mon.api, "job-kill00000000", "")) >= n/3
	})
	mon.kill()
	close(killed)
	wg.Wait() // every line is confirmed by the broker
	mon = startServe(t, bin, rc, store, flags...)
	for j := range jobsN {
		job := fmt.Sprintf("job-kill%08d", j)
		var lines []joblogs.Line
		testutil.WaitFor(t, "all of "+job, 2*time.Minute, func() bool {
			lines = storedLog(t, mon.api, job, "")
			return len(lines) >= n
		})
		if len(lines) != n {
			t.Fatalf("%s: %d lines stored, want %d", job, len(lines), n)
		}
		for i, l := range lines {
			if l.Seq != int64(i+1) || l.Text != fmt.Sprintf("job %d line %d", j, i+1) || l.Attempt != 1 {
				t.Fatalf("%s: line %d is %+v", job, i, l)
			}
		}
	}
	testutil.WaitFor(t, "the log queue to drain", time.Minute, func() bool { return queueDepth(t, rc.URL, logQueueOf(rc).Queue) == 0 })
	dups := metricValue(t, mon.api, "gpujobs_monitor_log_duplicates_total")
	t.Logf("%d jobs x %d lines written; monitor SIGKILLed with job 0 at >= %d stored; after the restart all %d stored once, in order, lost 0; %v redelivered lines dropped as duplicates",
		jobsN, n, n/3, jobsN*n, dups)
}

// TestAJobPrinting1GBIsCutAndBreaksNothing: a Writer fed 1 GiB keeps 64 MiB and one notice;
// the monitor stores that, stays within its memory, and serves another job's log after it.
func TestAJobPrinting1GBIsCutAndBreaksNothing(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	bin := monitorBinary(t)
	store := filepath.Join(t.TempDir(), "results.jsonl")
	mon := startServe(t, bin, rc, store)

	p := joblogs.NewPublisher(logQueueOf(rc), "logs-1gb", zaptest.NewLogger(t))
	defer p.Close()
	w := p.Job("job-big000000001", 1, joblogs.Limits{})
	line := strings.Repeat("0123456789abcdef", 64) // 1 KiB
	const total = 1 << 30
	start := time.Now()
	for range total / len(line) {
		w.Write(joblogs.StreamStdout, line)
	}
	wrote := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	const kept = joblogs.DefaultMaxBytes / 1024 // whole 1 KiB lines
	notice := fmt.Sprintf("log cut at 64 MiB: %d more bytes not kept", total-kept*1024)
	if w.Dropped() != total-kept*1024 {
		t.Errorf("dropped %d, want %d", w.Dropped(), total-kept*1024)
	}
	var lines []joblogs.Line
	testutil.WaitFor(t, "the 64 MiB and the notice", 5*time.Minute, func() bool {
		lines = storedLog(t, mon.api, "job-big000000001", "")
		return len(lines) >= kept+1
	})
	var text int64
	for _, l := range lines[:len(lines)-1] {
		text += int64(len(l.Text))
	}
	last := lines[len(lines)-1]
	if len(lines) != kept+1 || text > joblogs.DefaultMaxBytes || last.Stream != joblogs.StreamGpujobs || last.Text != notice {
		t.Fatalf("%d lines, %d bytes of text, last %+v; want %d lines of at most 64 MiB and the notice %q", len(lines), text, last, kept+1, notice)
	}
	logFile := filepath.Join(filepath.Dir(store), "logs", "job-big000000001.jsonl")
	st, err := os.Stat(logFile)
	if err != nil || st.Size() > DefaultLogMaxJob {
		t.Fatalf("log file: %v %v", st, err)
	}
	// Healthy afterwards: the queue drained, another job's log stored at once, memory bounded.
	testutil.WaitFor(t, "the log queue to drain", time.Minute, func() bool { return queueDepth(t, rc.URL, logQueueOf(rc).Queue) == 0 })
	small := p.Job("job-small0000001", 1, joblogs.Limits{})
	small.Write(joblogs.StreamStdout, "still here")
	if err := small.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the next job's log", 30*time.Second, func() bool { return len(storedLog(t, mon.api, "job-small0000001", "")) == 1 })
	if h := mon.health(t); h.Status != "ok" || h.RabbitMQ != "connected" || h.LogQueue != "connected" {
		t.Errorf("health %+v", h)
	}
	hwm := peakRSS(t, mon.cmd.Process.Pid)
	if hwm > 512<<20 {
		t.Errorf("the monitor's peak RSS is %d MiB after storing a 64 MiB log", hwm>>20)
	}
	t.Logf("1 GiB written in %s (%.1f GB/s); kept %d lines (%d bytes of text) and the notice %q; log file %d MiB; monitor peak RSS %d MiB",
		wrote, float64(total)/wrote.Seconds()/1e9, kept, text, notice, st.Size()>>20, hwm>>20)
}

// peakRSS reads a process's VmHWM.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestServeWithATokenAndWithout: the real binary with a token from a file answers 401 without
// it or with another, 200 with it; monitor tail takes it; without a token, serve refuses a
// non-loopback address in one line, unless --insecure-no-auth.
func TestServeWithATokenAndWithout(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	bin := monitorBinary(t)
	const token = "e2e-token-5f0c2b9d41e8a7c3"
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600) //nolint:errcheck // read below
	mon := startServe(t, bin, rc, filepath.Join(t.TempDir(), "results.jsonl"), "--token-file", tokenFile)
	p := joblogs.NewPublisher(logQueueOf(rc), "logs-auth", zaptest.NewLogger(t))
	defer p.Close()
	w := p.Job("job-auth00000001", 1, joblogs.Limits{})
	w.Write(joblogs.StreamStdout, "secret output")
	w.Close(context.Background()) //nolint:errcheck // checked by what the monitor stores
	testutil.WaitFor(t, "the line", 30*time.Second, func() bool { return len(storedLog(t, mon.api, "job-auth00000001", token)) == 1 })

	for _, path := range []string{"/api/stats", "/api/results", "/api/jobs/job-auth00000001/logs", "/api/jobs/job-auth00000001/logs/stream", "/metrics"} {
		for auth, want := range map[string]int{"": 401, "Bearer not-" + token: 401, "Bearer " + token: 200} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, mon.api+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cancel()
			if resp.StatusCode != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, resp.StatusCode, want)
			}
		}
	}
	if resp, err := httpClient.Get(mon.api + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz needs no token (probes): %v", err)
	}

	tail := func(env ...string) (string, error) {
		cmd := exec.Command(bin, "tail", "--follow=false", "--api", mon.api)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := tail("MONITOR_TOKEN=" + token); err != nil || !strings.Contains(out, "== 0 results") {
		t.Errorf("tail with MONITOR_TOKEN: %v\n%s", err, out)
	}
	if out, err := tail("MONITOR_TOKEN="); err == nil || !strings.Contains(out, "MONITOR_TOKEN") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("tail without a token: %v\n%s", err, out)
	}

	addr := "0.0.0.0:" + strings.Split(testutil.FreeAddr(t), ":")[1]
	cmd := exec.Command(bin, "serve", "--addr", addr, "--store", filepath.Join(t.TempDir(), "r.jsonl"), "--rabbitmq-url", rc.URL,
		"--result-queue", rc.Queue, "--log-queue", logQueueOf(rc).Queue, "--log-format", "json")
	cmd.Env = append(os.Environ(), "MONITOR_TOKEN=", "MONITOR_TOKEN_FILE=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "monitor: --addr "+addr+" serves beyond this host") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("serve on %s without a token: %v\n%s", addr, err, out)
	}
	// --insecure-no-auth (behind an authenticating proxy) serves there.
	rc2 := testQueue(t, rc.URL)
	t.Cleanup(func() { testutil.DeleteQueues(rc.URL, logQueueOf(rc2).Queue) })
	open := exec.Command(bin, "serve", "--addr", addr, "--insecure-no-auth", "--store", filepath.Join(t.TempDir(), "r.jsonl"),
		"--rabbitmq-url", rc.URL, "--result-queue", rc2.Queue, "--log-queue", logQueueOf(rc2).Queue, "--log-format", "json")
	open.Env = cmd.Env
	if err := open.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Process.Kill(); open.Wait() }) //nolint:errcheck
	local := "http://127.0.0.1:" + strings.Split(addr, ":")[1]
	testutil.WaitFor(t, "serve --insecure-no-auth on "+addr, 30*time.Second, func() bool {
		var st Stats
		return getJSONErr(local+"/api/stats", &st) == nil
	})
}
