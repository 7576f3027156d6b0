package e2e

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
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// isolated returns an environment of the test's own: a fresh dev server (so that no other
// test's workers share its task queues) and a fresh result queue on the broker at rabbitURL.
func (e *environment) isolated(t testing.TB, rabbitURL string) *environment {
	t.Helper()
	logf, err := os.Create(filepath.Join(e.logDir, strings.ReplaceAll(t.Name(), "/", "_")+"-devserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testsuite.StartDevServer(context.Background(), testsuite.DevServerOptions{
		ExistingPath: filepath.Join(e.bin, "devserver"), LogLevel: "warn", Stdout: logf, Stderr: logf,
	})
	if err != nil {
		t.Fatalf("start a dev server: %v", err)
	}
	t.Cleanup(func() { srv.Stop(); logf.Close() })
	iso := &environment{bin: e.bin, server: srv, address: srv.FrontendHostPort(), rabbitURL: rabbitURL,
		resultQueue: "e2e_results_" + testutil.RandomHex(4), logDir: e.logDir}
	t.Cleanup(func() {
		testutil.DeleteQueues(rabbitURL, iso.resultQueue)
		testutil.DeleteQueues(rabbitURL, iso.logQueue())
	})
	return iso
}

// startMonitor runs `monitor serve` on the environment's result queue, with any extra flags, and
// returns its API URL.
func (e *environment) startMonitor(t *testing.T, extra ...string) string {
	t.Helper()
	api := "http://" + testutil.FreeAddr(t)
	// Its log queue is the test's own too, never the shared broker's log_queue.
	t.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, e.resultQueue+"_logs") })
	args := append([]string{"serve", "--addr", strings.TrimPrefix(api, "http://"),
		"--store", filepath.Join(t.TempDir(), "results.jsonl"), "--rabbitmq-url", e.rabbitURL, "--result-queue", e.resultQueue,
		"--log-queue", e.logQueue()}, extra...)
	e.startProcess(t, "monitor", "monitor", args...)
	testutil.WaitFor(t, "monitor serve to answer", 30*time.Second, func() bool {
		resp, err := http.Get(api + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return api
}

// totals reads the monitor's counts.
func totals(t *testing.T, api string) monitor.Totals {
	t.Helper()
	resp, err := http.Get(api + "/api/stats")
	if err != nil {
		return monitor.Totals{}
	}
	defer resp.Body.Close()
	var s monitor.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return monitor.Totals{}
	}
	return s.Totals
}

// gauge reads one unlabelled metric from a worker's /metrics.
func gauge(addr, name string) (float64, bool) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// submitIDs runs `starter submit ... --json` and returns the accepted job IDs.
func (e *environment) submitIDs(t *testing.T, args ...string) []string {
	t.Helper()
	out, stderr, code := e.starter(t, append([]string{"submit", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("starter submit %v: exit %d, %s", args, code, stderr)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct {
			JobID string `json:"job_id"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil || s.JobID == "" {
			t.Fatalf("starter submit printed %q", line)
		}
		ids = append(ids, s.JobID)
	}
	return ids
}

// A broker outage of any length loses no result and fails no job whose kernel ran: the results
// wait (visibly: the job's status and the scheduler's gauge say so) and reach the monitor once
// the broker is back, each counted once. Before the fix, a 17 s outage lost a quarter of them.
func TestBrokerOutagesLoseNoResult(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	for _, tc := range []struct {
		name   string
		jobs   int
		outage time.Duration
	}{
		{"60s during a burst of 100 jobs", 100, 60 * time.Second},
		{"5 minutes for 10 jobs", 10, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := testutil.StartBroker(t)
			e := env.isolated(t, b.URL)
			health := testutil.FreeAddr(t)
			e.startWorker(t, "scheduler", "sched", "--health-addr", health)
			e.startWorker(t, "cpu", "cpu-a")
			e.startWorker(t, "cpu", "cpu-b")
			api := e.startMonitor(t)

			// Half the burst before the broker goes away, half while it is away.
			submit := func(n int) []string {
				return e.submitIDs(t, "vector_addition", "--size", "1000", "--iterations", "1", "--cpu", "--count", strconv.Itoa(n))
			}
			ids := submit(tc.jobs / 2)
			b.Stop(t)
			down := time.Now()
			ids = append(ids, submit(tc.jobs-tc.jobs/2)...)
			c := e.dial(t)
			last := ids[len(ids)-1]
			testutil.WaitFor(t, "a job to wait for the broker", 2*time.Minute, func() bool {
				st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, last)
				return err == nil && st.Stage != nil && st.Stage.Stage == workflows.StageWaitingBroker
			})
			if out, _, _ := e.starter(t, "status", last); !strings.Contains(out, "waiting for RabbitMQ to take its result") {
				t.Errorf("starter status during the outage:\n%s", out)
			}
			testutil.WaitFor(t, "the scheduler to count the jobs waiting to publish", time.Minute, func() bool {
				v, ok := gauge(health, "gpujobs_results_waiting_to_publish")
				return ok && v > 0
			})
			time.Sleep(time.Until(down.Add(tc.outage))) // the outage itself
			b.Start(t)
			back := time.Now()

			testutil.WaitFor(t, "the monitor to count every result", 4*time.Minute, func() bool {
				return totals(t, api).Results >= tc.jobs
			})
			recovery := time.Since(back)
			results, err := jobclient.AwaitAll(ctxTimeout(t, time.Minute), c, ids)
			if err != nil {
				t.Fatal(err)
			}
			completed := 0
			for _, r := range results {
				if r.Status == jobs.StatusCompleted {
					completed++
				}
			}
			tot := totals(t, api)
			t.Logf("outage %s: submitted %d, completed %d, counted by the monitor %d (completed %d, failed %d), duplicates %d, lost %d, recovery %s",
				tc.outage, tc.jobs, completed, tot.Results, tot.Completed, tot.Failed, tot.Duplicates, tc.jobs-tot.Results, recovery.Round(time.Second))
			if completed != tc.jobs || tot.Results != tc.jobs || tot.Completed != tc.jobs || tot.Failed != 0 {
				t.Errorf("want all %d jobs completed and counted once", tc.jobs)
			}
			testutil.WaitFor(t, "the waiting gauge to fall back to 0", time.Minute, func() bool {
				v, ok := gauge(health, "gpujobs_results_waiting_to_publish")
				return ok && v == 0
			})
		})
	}
}

// bigJobBytes is the size of a job that fits this host's memory budget once but not twice.
func bigJobBytes() int64 { return activities.DefaultMemoryBudget() * 6 / 10 }

// rss is a process's resident memory, bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Two jobs that each take 60% of the host's memory budget, submitted at once to two CPU workers
// of one host: one waits for the other (no OOM kill), both complete, and the workers give the
// memory back when idle. A job larger than a worker's limit fails at once.
func TestBigJobsShareTheHostsMemory(t *testing.T) {
	e := env
	ledger := filepath.Join(t.TempDir(), "memory.json")
	e.startWorker(t, "scheduler", "sched-m1")
	a := e.startWorker(t, "cpu", "cpu-m1", "--memory-ledger", ledger)
	b := e.startWorker(t, "cpu", "cpu-m2", "--memory-ledger", ledger)
	size := bigJobBytes() / 12 // vector_addition holds 3 float32 vectors
	out, stderr, code := e.starter(t, "submit", "vector_addition", "--size", strconv.FormatInt(size, 10), "--iterations", "1",
		"--cpu", "--count", "2", "--wait", "--json")
	var rs []jobs.Result
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r jobs.Result
		if json.Unmarshal([]byte(line), &r) == nil {
			rs = append(rs, r)
		}
	}
	if code != 0 || len(rs) != 2 {
		t.Fatalf("two %s jobs: exit %d, %d results, stderr %q", jobs.FormatBytes(12*size), code, len(rs), stderr)
	}
	first, second := rs[0], rs[1]
	if second.StartTime.Before(first.StartTime) {
		first, second = second, first
	}
	t.Logf("two %s jobs: %s on %s %s..%s, %s on %s %s..%s", jobs.FormatBytes(12*size),
		first.JobID, first.WorkerID, first.StartTime.Format("15:04:05.000"), first.EndTime.Format("15:04:05.000"),
		second.JobID, second.WorkerID, second.StartTime.Format("15:04:05.000"), second.EndTime.Format("15:04:05.000"))
	if second.StartTime.Before(first.EndTime) {
		t.Errorf("the two jobs ran at once: together they exceed the host's budget of %s", jobs.FormatBytes(activities.DefaultMemoryBudget()))
	}
	for _, p := range []*process{a, b} {
		select {
		case <-p.done:
			t.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
	}
	for _, p := range []*process{a, b} {
		testutil.WaitFor(t, p.name+" to give the memory back", 30*time.Second, func() bool {
			return rss(p.cmd.Process.Pid) < 1<<30
		})
	}

	// A job larger than a worker's limit can never run there: it fails at once, not retried.
	e.startWorker(t, "cpu", "cpu-m3", "--memory-limit", "64MiB", "--memory-ledger", ledger)
	a.signal(syscall.SIGTERM)
	b.signal(syscall.SIGTERM)
	<-a.done
	<-b.done
	r := e.submitJSON(t, "vector_addition", "--size", "10000000", "--iterations", "1", "--cpu")
	if r.Status != jobs.StatusFailed || r.ErrorType != jobs.ErrResourceExhausted || !strings.Contains(r.Error, "this CPU worker may use 64.0 MiB") || r.WorkerID != "cpu-m3" {
		t.Errorf("a job over the worker's limit: %+v", r)
	}
}

// A cancel of a 32768² product stops its kernel within seconds, in the middle of its first
// (warm-up) product, frees the worker's slot, and only then is "canceled" published.
func TestCancelOfAHugeMatrixFreesTheSlotWithinSeconds(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-x1")
	w := e.startWorker(t, "cpu", "cpu-x1", "--memory-ledger", filepath.Join(t.TempDir(), "memory.json"))
	c := e.dial(t)
	req := submitAll(t, c, []jobclient.Spec{{JobType: "matrix_multiply", Params: `{"size": 32768, "iterations": 1}`, Device: "cpu"}})[0]
	// Its inputs (8 GiB) are generated and the first product writes its 4 GiB result: the kernel
	// is in its warm-up product, which takes minutes at this size.
	testutil.WaitFor(t, "the 32768² job to be in its first product", 10*time.Minute, func() bool {
		return rss(w.cmd.Process.Pid) > 17<<29 // 8.5 GiB
	})
	canceled := time.Now()
	if _, stderr, code := e.starter(t, "cancel", req.JobID); code != 0 {
		t.Fatalf("cancel: %s", stderr)
	}
	next := e.submitJSON(t, "vector_addition", "--size", "1000", "--iterations", "1", "--cpu")
	res, err := jobclient.Await(ctxTimeout(t, time.Minute), c, req.JobID)
	if err != nil {
		t.Fatal(err)
	}
	stopped := logTime(t, w.log, "job canceled; the kernel has stopped")
	t.Logf("cancel at %s, kernel stopped %s later, next job started %s after the cancel, canceled published at %s",
		canceled.Format("15:04:05.000"), stopped.Sub(canceled).Round(time.Millisecond), next.StartTime.Sub(canceled).Round(time.Millisecond), res.EndTime.Format("15:04:05.000"))
	if res.Status != jobs.StatusCanceled {
		t.Errorf("result %+v, want canceled", res)
	}
	if next.Status != jobs.StatusCompleted || next.WorkerID != "cpu-x1" || next.StartTime.Sub(canceled) > 10*time.Second {
		t.Errorf("the next job on the worker started %s after the cancel (%+v): want its slot free within 10 s", next.StartTime.Sub(canceled), next)
	}
	if res.EndTime.Before(stopped) {
		t.Errorf("canceled was published at %s, before the kernel stopped at %s", res.EndTime, stopped)
	}
}

// logTime returns the time of the first JSON log line of path whose message is msg.
func logTime(t *testing.T, path, msg string) time.Time {
	t.Helper()
	var at time.Time
	testutil.WaitFor(t, "the worker to log "+msg, 30*time.Second, func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				TS  float64 `json:"ts"`
				Msg string  `json:"msg"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
				at = time.Unix(0, int64(line.TS*1e9))
				return true
			}
		}
		return false
	})
	return at
}

// A JobWorkflow started by another client with an input that is not a job request still ends
// with a published failed result that names what could not be read.
func TestUndecodableInputStillPublishesAResult(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-u1")
	c := e.dial(t)
	for _, tc := range []struct {
		input any
		want  string
	}{
		{"garbage", "got a JSON string"},
		{42, "got a JSON number"},
		{map[string]any{"job_type": "matrix_multiply", "submit_time": "yesterday"}, `submit_time: "yesterday" is not an RFC 3339 time`},
	} {
		id := jobs.NewJobID()
		if _, err := c.ExecuteWorkflow(ctxTimeout(t, 10*time.Second), client.StartWorkflowOptions{ID: id, TaskQueue: jobs.JobQueue},
			workflows.JobWorkflowName, tc.input); err != nil {
			t.Fatal(err)
		}
		pub := e.resultsOf(t, id, 30*time.Second)[0]
		if pub.Status != jobs.StatusFailed || pub.ErrorType != jobs.ErrInvalidParams || !strings.Contains(pub.Error, tc.want) {
			t.Errorf("input %v: published %+v, want InvalidParams saying %q", tc.input, pub, tc.want)
		}
	}
}

// What a new user meets at the command line: one line per error that names the flag and what it
// takes, one exit-code rule, the published result shown as the monitor stored it, and job IDs
// of any shape.
func TestStarterTellsTheSameTruthAsTheMonitor(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-t1")
	e.startWorker(t, "cpu", "cpu-t1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "matrix_multiply", "--priority", "0"}, "invalid --priority 0: allowed 1 (dispatched first) .. 5 (last)"},
		{[]string{"submit", "matrix_multiply", "--size", "abc"}, `invalid --size "abc": want an integer`},
		{[]string{"submit", "matrix_multiply", "--timeout", "10"}, `invalid --timeout "10": want a duration`},
		{[]string{"submit", "matrix_multiply", "--params", `{"size": 10} {"size": 20}`}, "--params has data after its JSON object"},
		{[]string{"list", "--type", "bogus"}, `no jobs of type "bogus" in this namespace: the built-in types are`},
	} {
		out, stderr, code := e.starter(t, tc.args...)
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("starter %v: exit %d, stdout %q, stderr %q: want one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}

	// result --json shows the result that was published, field for field; and a job ID of another
	// shape than job-<12 hex> (other clients bring theirs) works throughout.
	id := "batch/2026-12-02/run-7"
	if _, stderr, code := e.starter(t, "submit", "neural_network", "--params", `{"learning_rate": 1}`, "--epochs", "1", "--batch-size", "8",
		"--id", id, "--cpu"); code != 0 {
		t.Fatalf("submit with a foreign ID: %s", stderr)
	}
	got, stderr, code := e.starter(t, "result", id, "--json")
	var shown jobs.Result
	if err := json.Unmarshal([]byte(got), &shown); err != nil {
		t.Fatalf("result --json of %s: exit %d %q %q", id, code, got, stderr)
	}
	sameAsPublished(t, shown, e.resultsOf(t, id, 30*time.Second)[0])
	if shown.Status == jobs.StatusCompleted && code != 0 {
		t.Errorf("result of a completed job: exit %d", code)
	}
	if _, _, code := e.starter(t, "status", id); code != 0 {
		t.Errorf("status of %s: exit %d", id, code)
	}

	// One rule for exit codes: cancel --wait succeeds when the job stopped; result of that
	// canceled job reports it with exit code 3.
	c := e.dial(t)
	long := submitAll(t, c, []jobclient.Spec{{JobType: "matrix_multiply", Params: `{"size": 256, "iterations": 100000}`, Device: "cpu"}})[0]
	_, stderr, code = e.starter(t, "result", long.JobID, "--timeout", "2s")
	if code != 4 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, long.JobID+" still running after 2s") {
		t.Errorf("result --timeout of a running job: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := e.starter(t, "cancel", long.JobID, "--wait"); code != 0 {
		t.Errorf("cancel --wait: exit %d, %s", code, stderr)
	}
	out, stderr, code := e.starter(t, "result", long.JobID)
	if code != 3 || !strings.Contains(out, "canceled") || !strings.Contains(stderr, "1 of 1 jobs were canceled") {
		t.Errorf("result of a canceled job: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	canceled := e.resultsOf(t, long.JobID, 30*time.Second)[0]
	got, _, _ = e.starter(t, "result", long.JobID, "--json")
	var shownCanceled jobs.Result
	if err := json.Unmarshal([]byte(got), &shownCanceled); err != nil {
		t.Fatalf("result --json of a canceled job: %q", got)
	}
	sameAsPublished(t, shownCanceled, canceled)
	if canceled.SubmitTime.IsZero() || canceled.EndTime.IsZero() || canceled.ScheduleReason == "" || canceled.Priority != 3 || canceled.WorkerID != "cpu-t1" || canceled.WorkerType != "cpu" {
		t.Errorf("published canceled result lacks its job's fields or its worker: %+v", canceled)
	}
	if canceled.DeviceMemory != 0 {
		t.Errorf("a CPU result carries device_memory %d (documented for GPU runs)", canceled.DeviceMemory)
	}
}

// sameAsPublished compares what the starter shows with what the monitor received.
func sameAsPublished(t *testing.T, shown, pub jobs.Result) {
	t.Helper()
	a, _ := json.Marshal(shown)
	b, _ := json.Marshal(pub)
	if string(a) != string(b) {
		t.Errorf("starter result --json differs from the published result:\n%s\n%s", a, b)
	}
}

// A malformed setting in the environment stops a worker at once, naming the variable and what
// it takes, instead of being replaced by its default.
func TestMalformedEnvironmentStopsAWorker(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"HEARTBEAT_TIMEOUT", "10", `HEARTBEAT_TIMEOUT="10": want a duration with its unit`},
		{"WORKER_CONCURRENCY", "two", `WORKER_CONCURRENCY="two": want an integer`},
		{"WORKER_MEMORY_LIMIT", "lots", `WORKER_MEMORY_LIMIT="lots": want a size`},
	} {
		cmd := exec.Command(filepath.Join(env.bin, "worker"), "--role", "cpu", "--temporal-address", env.address)
		cmd.Env = append(os.Environ(), tc.name+"="+tc.value)
		out, err := cmd.CombinedOutput()
		if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("worker with %s=%s: %v, output %q", tc.name, tc.value, err, out)
		}
	}
}
