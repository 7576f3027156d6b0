package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// faultRow is one line of the fault table: what was submitted around the fault and what came
// out of it.
type faultRow struct {
	fault                 string
	submitted, completed  int
	counted, countedTwice int
	lost                  int
	dedup                 int64 // redelivered or republished results the monitor recognised
	outage, recovery      time.Duration
	note                  string
	lastCounted           time.Time // when the monitor held the last completed job's result
}

// TestClusterFaults runs the faults one after another on one cluster (two CPU worker hosts) and
// prints the fault table. Each fault checks that every job submitted around it completes, that
// the monitor counts each exactly once, and what the fault says about who ran it; the monitor's
// total must equal the number of jobs submitted since the cluster started after every fault.
func TestClusterFaults(t *testing.T) {
	enabled(t)
	tc := newTestCluster(t, 2)
	var rows []faultRow
	t.Cleanup(func() { printFaultTable(rows) })
	record := func(r faultRow) {
		rows = append(rows, r)
		tc.logf("%s: submitted %d, completed %d, counted %d (twice %d), lost %d, deduplicated %d, outage %s, recovery %s; %s",
			r.fault, r.submitted, r.completed, r.counted, r.countedTwice, r.lost, r.dedup, r.outage.Round(100*time.Millisecond), r.recovery.Round(100*time.Millisecond), r.note)
	}
	var all []string // every job submitted on this cluster
	steps := []struct {
		name string
		run  func(t *testing.T) faultRow
	}{
		{"steady state", func(t *testing.T) faultRow { return tc.steadyState(t) }},
		{"worker host cut off mid-job", func(t *testing.T) faultRow { return tc.workerCut(t) }},
		{"broker host stopped 30 s in a burst", func(t *testing.T) faultRow { return tc.brokerStopped(t) }},
		{"Temporal server SIGKILLed, restarted", func(t *testing.T) faultRow { return tc.temporalKilled(t) }},
		{"PostgreSQL restarted under jobs", func(t *testing.T) faultRow { return tc.postgresRestarted(t) }},
		{"monitor host SIGKILLed, restarted", func(t *testing.T) faultRow { return tc.monitorKilled(t) }},
		{"scheduler host cut off", func(t *testing.T) faultRow { return tc.schedulerCut(t) }},
	}
	for _, s := range steps {
		ok := t.Run(strings.ReplaceAll(s.name, " ", "_"), func(t *testing.T) {
			before := len(tc.submittedIDs())
			r := s.run(t)
			r.fault = s.name
			record(r)
			all = tc.submittedIDs()
			if r.lost != 0 || r.countedTwice != 0 || r.completed != r.submitted || r.counted != r.submitted || len(all)-before != r.submitted {
				t.Errorf("%s: submitted %d (%d new), completed %d, counted %d, counted twice %d, lost %d: want every job completed and counted once",
					s.name, r.submitted, len(all)-before, r.completed, r.counted, r.countedTwice, r.lost)
			}
			// Jobs lost by a fault are reported in its row; the rest must be counted exactly.
			tc.checkExactTotal(t, len(all)-tc.lostCount())
		})
		if !ok {
			if dead := tc.dead(); dead != "" {
				t.Errorf("stopping after %q: %s", s.name, dead)
				break
			}
		}
	}
}

func printFaultTable(rows []faultRow) {
	if len(rows) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ncluster fault table (2 CPU worker hosts; heartbeat timeout 10 s; each row counts the jobs submitted around its fault;\n")
	fmt.Fprintf(&b, "dedup: results the monitor received again and recognised; outage: how long the fault lasted; recovery: as the row says)\n")
	fmt.Fprintf(&b, "| %-38s | %9s | %9s | %7s | %12s | %4s | %5s | %7s | %8s | %s\n", "fault", "submitted", "completed", "counted", "counted twice", "lost", "dedup", "outage", "recovery", "what happened")
	fmt.Fprintf(&b, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|---\n", strings.Repeat("-", 40), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 9), strings.Repeat("-", 14), strings.Repeat("-", 6), strings.Repeat("-", 7), strings.Repeat("-", 9), strings.Repeat("-", 10))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %-38s | %9d | %9d | %7d | %12d | %4d | %5d | %6.1fs | %7.1fs | %s\n", r.fault, r.submitted, r.completed, r.counted, r.countedTwice, r.lost, r.dedup, r.outage.Seconds(), r.recovery.Seconds(), r.note)
	}
	fmt.Print(b.String())
}

// --- bookkeeping -------------------------------------------------------------------------------

var submittedMu sync.Mutex
var submittedAll = map[*testCluster][]string{}

func (tc *testCluster) remember(ids ...string) {
	submittedMu.Lock()
	defer submittedMu.Unlock()
	submittedAll[tc] = append(submittedAll[tc], ids...)
}

var lostAll = map[*testCluster]map[string]bool{}

// lose records a job whose result will never come (its workflow failed).
func (tc *testCluster) lose(id string) {
	submittedMu.Lock()
	defer submittedMu.Unlock()
	if lostAll[tc] == nil {
		lostAll[tc] = map[string]bool{}
	}
	lostAll[tc][id] = true
}

func (tc *testCluster) lostCount() int {
	submittedMu.Lock()
	defer submittedMu.Unlock()
	return len(lostAll[tc])
}

func (tc *testCluster) submittedIDs() []string {
	submittedMu.Lock()
	defer submittedMu.Unlock()
	return slices.Clone(submittedAll[tc])
}

// submitJobs submits and remembers.
func (tc *testCluster) submitJobs(tb testing.TB, reqs ...jobs.Request) []string {
	ids := tc.submit(tb, reqs...)
	tc.remember(ids...)
	return ids
}

func (tc *testCluster) tinyJobs(tb testing.TB, n int) []jobs.Request {
	reqs := make([]jobs.Request, n)
	for i := range reqs {
		reqs[i] = tc.tinyJob(tb)
	}
	return reqs
}

// dead names the instances whose process has exited, if any.
func (tc *testCluster) dead() string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var names []string
	for name, inst := range tc.instances {
		if inst.Proc == nil || inst.oneShot {
			continue
		}
		select {
		case <-inst.Proc.Done():
			names = append(names, name)
		default:
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return "not running: " + strings.Join(names, ", ")
}

// checkExactTotal: the monitor has exactly one result per job ever submitted.
func (tc *testCluster) checkExactTotal(t *testing.T, want int) {
	t.Helper()
	s, err := tc.monitorStats()
	if err != nil {
		t.Fatalf("monitor stats: %v", err)
	}
	if s.Results != want {
		t.Errorf("monitor holds %d results, %d jobs were submitted since the cluster started", s.Results, want)
	}
	lines := tc.storeLines(t)
	if lines != want {
		t.Errorf("the monitor's store has %d lines, want %d (one per job)", lines, want)
	}
}

// storeLines counts the results in the monitor's store (RESULTS_FILE on its volume).
func (tc *testCluster) storeLines(t *testing.T) int {
	t.Helper()
	inst := tc.Instance("monitor")
	b, err := os.ReadFile(inst.Cmd.Env["RESULTS_FILE"])
	if err != nil {
		t.Fatalf("read the monitor's store: %v", err)
	}
	return strings.Count(string(b), "\n")
}

// outcome waits for the jobs' workflows and then for the monitor to hold every completed job's
// result, and fills the counting columns. A job whose workflow does not complete is lost (its
// result never reaches the monitor); its failures are reported once per kind of error.
func (tc *testCluster) outcome(t *testing.T, ids []string, timeout time.Duration) (faultRow, []jobs.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results, err := jobclient.AwaitAll(ctx, tc.temporal, ids)
	if err != nil {
		t.Errorf("await jobs: %v", err)
	}
	r := faultRow{submitted: len(ids)}
	var completed []string
	failures := map[string][]string{}
	for _, res := range results {
		if res.Status == jobs.StatusCompleted {
			r.completed++
			completed = append(completed, res.JobID)
		} else if res.JobID != "" {
			key := fmt.Sprintf("%s (%s): %s", res.Status, res.ErrorType, shorten(jobIDs.ReplaceAllString(res.Error, "job-…"), 200))
			failures[key] = append(failures[key], res.JobID)
			tc.lose(res.JobID)
		}
	}
	for _, why := range slices.Sorted(maps.Keys(failures)) {
		t.Errorf("%d jobs did not complete, e.g. %s: %s", len(failures[why]), failures[why][0], why)
	}
	// Every result of a completed job must reach the monitor; give it the time to drain.
	r.lastCounted = tc.waitCounted(t, completed, time.Minute)
	counts, err := tc.monitorCounts(ids)
	if err != nil {
		t.Errorf("monitor: %v", err)
	}
	for _, id := range ids {
		switch n := counts[id]; {
		case n == 0:
			r.lost++
		case n > 1:
			r.countedTwice++
			r.counted++
		default:
			r.counted++
		}
	}
	return r, results
}

var jobIDs = regexp.MustCompile(`job-[0-9a-f]{12}`)

// waitCounted polls the monitor until it holds every id; it returns when that happened.
func (tc *testCluster) waitCounted(t *testing.T, ids []string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts, err := tc.monitorCounts(ids)
		n := 0
		for _, id := range ids {
			if counts[id] > 0 {
				n++
			}
		}
		if err == nil && n == len(ids) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Logf("after %s the monitor holds %d of %d results (last error %v)", timeout, n, len(ids), err)
			return time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history facts of one job: the Execute activity's completions (by worker identity) and when it
// was first scheduled. Other activities (PublishResult, when the broker was away) do not count.
type jobHistory struct {
	completedBy []string
	scheduled   time.Time
}

func (tc *testCluster) history(t *testing.T, id string) jobHistory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var h jobHistory
	execute := map[int64]bool{} // scheduled event IDs of Execute
	it := tc.temporal.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() != workflows.ExecuteActivity {
				continue
			}
			execute[ev.GetEventId()] = true
			if h.scheduled.IsZero() {
				h.scheduled = ev.GetEventTime().AsTime()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if a := ev.GetActivityTaskCompletedEventAttributes(); execute[a.GetScheduledEventId()] {
				h.completedBy = append(h.completedBy, a.GetIdentity())
			}
		}
	}
	return h
}

// checkOnce: each job's Execute activity completed exactly once in Temporal's history.
func (tc *testCluster) checkOnce(t *testing.T, ids []string) {
	t.Helper()
	for _, id := range ids {
		if h := tc.history(t, id); len(h.completedBy) != 1 {
			t.Errorf("%s: Execute completed %d times in the history (%v), want once", id, len(h.completedBy), h.completedBy)
		}
	}
}

// logLine is one JSON line of a gpujobs process's log.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// logLines reads an instance's log (JSON lines; other lines are skipped).
func (tc *testCluster) logLines(name string) []logLine {
	f, err := os.Open(tc.LogPath(name))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// kernelRuns counts, per job, the kernels that ran to completion on any CPU worker host ("job
// completed" in the workers' logs), whether or not Temporal accepted the result.
func (tc *testCluster) kernelRuns(ids []string) map[string]int {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	runs := map[string]int{}
	for _, name := range tc.workerNames() {
		for _, l := range tc.logLines(name) {
			if l.str("msg") == "job completed" && want[l.str("job_id")] {
				runs[l.str("job_id")]++
			}
		}
	}
	return runs
}

func (tc *testCluster) workerNames() []string {
	var names []string
	for _, h := range hostPlan {
		if strings.HasPrefix(h.Name, "cpu") && tc.Instance(h.Name) != nil {
			names = append(names, h.Name)
		}
	}
	return names
}

// checkRunOnce: no kernel ran to completion twice.
func (tc *testCluster) checkRunOnce(t *testing.T, ids []string) {
	t.Helper()
	for id, n := range tc.kernelRuns(ids) {
		if n > 1 {
			t.Errorf("%s ran to completion %d times", id, n)
		}
	}
}

// running waits until at least n of the jobs have Execute started on a worker.
func (tc *testCluster) running(t *testing.T, ids []string, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d of the jobs running on a worker", n), timeout, func() bool {
		got := 0
		for _, id := range ids {
			if w, _ := tc.runningOn(id); w != "" {
				got++
			}
		}
		return got >= n
	})
}

// runningOn returns the identity of the worker that runs the job's Execute now, and the attempt.
func (tc *testCluster) runningOn(id string) (string, int32) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := tc.temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return "", 0
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
			return pa.GetLastWorkerIdentity(), pa.GetAttempt()
		}
	}
	return "", 0
}

// hostOf maps a worker identity (WORKER_ID, which defaults to HOSTNAME-PID) to its host.
func hostOf(identity string) string {
	h, _, _ := strings.Cut(identity, "-")
	return h
}

// --- the faults --------------------------------------------------------------------------------

// steadyState: nothing injected. A job submitted with the starter binary on the ctl host (as a
// user would, with the compose file's starter settings), tiny and short jobs spread over both
// worker hosts, and the Web UI answering for the PostgreSQL-backed server.
func (tc *testCluster) steadyState(t *testing.T) faultRow {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := tc.Net.Host("ctl").Run(ctx, Command{
		Name: "starter",
		Argv: []string{tc.Work + "/bin/starter", "submit", "matrix_multiply", "--size", "64", "--iterations", "2", "--wait", "--json"},
		Env:  tc.Compose.Services["starter"].Environment, Log: tc.LogPath("starter"),
	})
	var first jobs.Result
	if err != nil || json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &first) != nil || first.Status != jobs.StatusCompleted {
		t.Fatalf("starter submit --wait on ctl: %v\n%s", err, out)
	}
	tc.remember(first.JobID)
	reqs := tc.tinyJobs(t, 20)
	for range 4 { // also the machine's speed, for the worker cut's long job
		reqs = append(reqs, tc.job(t, "matrix_multiply", `{"size": 512, "iterations": 100}`))
	}
	ids := append([]string{first.JobID}, tc.submitJobs(t, reqs...)...)
	r, results := tc.outcome(t, ids, 2*time.Minute)
	r.recovery = r.lastCounted.Sub(start)
	hosts := map[string]int{}
	var mmTime float64
	var mmRuns int
	for _, res := range results {
		hosts[hostOf(res.WorkerID)]++
		if res.JobType == "matrix_multiply" && strings.Contains(string(res.Params), `"size":512`) {
			mmTime += res.ProcessingTime
			mmRuns++
		}
	}
	if mmRuns > 0 {
		tc.msPerIteration512 = 1000 * mmTime / float64(mmRuns) / 100
	}
	if len(hosts) < 2 {
		t.Errorf("all jobs ran on %v: want both worker hosts to take jobs", hosts)
	}
	tc.checkOnce(t, ids)
	tc.checkRunOnce(t, ids)

	var ns struct {
		Namespaces []struct {
			NamespaceInfo struct {
				Name string `json:"name"`
			} `json:"namespaceInfo"`
		} `json:"namespaces"`
	}
	if err := tc.getJSON("http://temporal-ui:8080/api/v1/namespaces", &ns); err != nil {
		t.Errorf("Web UI: %v", err)
	}
	var names []string
	for _, n := range ns.Namespaces {
		names = append(names, n.NamespaceInfo.Name)
	}
	if !slices.Contains(names, "default") {
		t.Errorf("the Web UI lists namespaces %v, want default", names)
	}
	// The monitor's /api/queue reaches the scheduler host's health address, as compose wires it.
	var queue struct {
		Jobs   []jobs.Prediction `json:"jobs"`
		Source string            `json:"source"`
	}
	if err := tc.getJSON(tc.monitorURL("/api/queue"), &queue); err != nil || queue.Source == "" {
		t.Errorf("the monitor's /api/queue: %v (source %q)", err, queue.Source)
	}
	r.note = fmt.Sprintf("no fault; the first job by the starter binary on ctl; jobs per host %v; the Web UI lists %v; 'recovery' = submit -> all counted", hosts, names)
	return r
}

// workerCut: the host running a long job loses its link. After the heartbeat timeout the job's
// next attempt starts on the other host; the cut-off host's kernel runs on to its end, and its
// late completion, sent when its link is back, is rejected by the server: the history has one
// completion, by the other host, and the monitor counts the job once. Tiny jobs submitted during
// the cut complete on the other host.
//
// The late completion is sent when the kernel ends and has its RPC's 10 s to get through once
// the link is back. TCP retransmits on the cut link at doubling intervals, so it may find the
// connection still backing off and expire unanswered: then the worker's completion was not
// accepted either, but its rejection was not seen, and the fault is tried once more.
func (tc *testCluster) workerCut(t *testing.T) faultRow {
	var ids []string
	var c cutTry
	var tries []cutTry
	for try := 1; try <= 2; try++ {
		c = tc.cutWorkerOnce(t)
		tries = append(tries, c)
		ids = append(ids, c.ids...)
		if c.rejected {
			break
		}
		tc.logf("worker cut, try %d: the late completion was not answered by the server (%s); trying again", try, shorten(c.answer, 120))
	}
	r, results := tc.outcome(t, ids, 3*time.Minute)
	r.outage, r.recovery = c.outage, c.takeover
	for _, try := range tries {
		for _, res := range results {
			if res.JobID == try.long && (hostOf(res.WorkerID) != try.survivor || res.Attempt < 2) {
				t.Errorf("the long job's result came from %s on attempt %d: want %s, attempt ≥ 2", res.WorkerID, res.Attempt, try.survivor)
			}
		}
		if hist := tc.history(t, try.long); len(hist.completedBy) != 1 || hostOf(hist.completedBy[0]) != try.survivor {
			t.Errorf("Execute completions in the history: %v, want one, by %s", hist.completedBy, try.survivor)
		}
	}
	if !c.rejected {
		t.Errorf("the cut-off worker's late completion: %q, want the server's rejection", c.answer)
	}
	r.note = fmt.Sprintf("'recovery' = cut -> next attempt started; %d iterations; attempt %d on %s %.1fs after the cut; %s's kernel finished %.1fs after the cut and its completion, sent when the link was back, got: %s",
		c.iterations, c.attempt, c.survivor, c.takeover.Seconds(), c.victim, c.late.Seconds(), shorten(c.answer, 80))
	if c.try > 1 {
		r.note += " (second try)"
	}
	tc.checkOnce(t, ids)
	return r
}

type cutTry struct {
	try              int
	ids              []string
	long             string
	victim, survivor string
	iterations       int
	attempt          int32
	takeover, late   time.Duration // after the cut
	outage           time.Duration
	answer           string
	rejected         bool
}

var cutTries int

func (tc *testCluster) cutWorkerOnce(t *testing.T) cutTry {
	cutTries++
	c := cutTry{try: cutTries, iterations: 6000}
	// About 10 s of kernel on this machine (the steady state measured it): ending neither long
	// before the heartbeat timeout nor long after it.
	if tc.msPerIteration512 > 0 {
		c.iterations = min(max(int(10000/tc.msPerIteration512), 500), 50000)
	}
	long := tc.job(t, "matrix_multiply", fmt.Sprintf(`{"size": 512, "iterations": %d}`, c.iterations))
	c.long = long.JobID
	c.ids = tc.submitJobs(t, long)
	var victim string
	waitFor(t, "the long job to run on a worker", time.Minute, func() bool {
		victim, _ = tc.runningOn(long.JobID)
		return victim != ""
	})
	c.victim = hostOf(victim)
	c.survivor = "cpu1"
	if c.victim == "cpu1" {
		c.survivor = "cpu2"
	}
	h := tc.Net.Host(c.victim)
	cut := time.Now()
	if err := h.Cut(); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			h.Heal() //nolint:errcheck // the test failed already; leave a usable cluster for teardown
		}
	}()
	c.ids = append(c.ids, tc.submitJobs(t, tc.tinyJobs(t, 10)...)...)

	var by string
	c.takeover = waitFor(t, "the job's next attempt to start on "+c.survivor, 2*time.Minute, func() bool {
		by, c.attempt = tc.runningOn(long.JobID)
		return hostOf(by) == c.survivor && c.attempt >= 2
	})
	// The cut-off host does not know: its kernel runs on and completes.
	waitFor(t, "the cut-off host's kernel to finish the job", 3*time.Minute, func() bool {
		for _, l := range tc.logLines(c.victim) {
			if l.str("job_id") == long.JobID && l.str("msg") == "job completed" {
				ts, _ := l["ts"].(float64) // zap's production encoder: seconds since the epoch
				c.late = time.Unix(0, int64(ts*1e9)).Sub(cut)
				return true
			}
		}
		return false
	})
	if err := h.Heal(); err != nil {
		t.Fatal(err)
	}
	healed = true
	c.outage = time.Since(cut)
	// What became of the late completion: the SDK logs the server's answer.
	waitFor(t, "the cut-off worker to report the late completion", 90*time.Second, func() bool {
		seen := false
		for _, l := range tc.logLines(c.victim) {
			if l.str("job_id") == long.JobID && l.str("msg") == "job completed" {
				seen = true
				continue
			}
			if seen && strings.HasPrefix(l.str("msg"), "Task processing failed") {
				c.answer = l.str("Error")
				return true
			}
		}
		return false
	})
	// The history service's answer to a completion of an attempt that timed out.
	c.rejected = strings.Contains(c.answer, "invalid activityID or activity already timed out")
	return c
}

// brokerStopped: every process of the broker host is killed (a stopped host) during a burst and
// the host is started again 30 s later on the same data; every result arrives once.
func (tc *testCluster) brokerStopped(t *testing.T) faultRow {
	broker := tc.Instance("rabbitmq")
	before, err := tc.monitorStats()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var idsMu sync.Mutex
	burst := func(n int, every time.Duration) {
		for range n {
			got := tc.submitJobs(t, tc.tinyJob(t))
			idsMu.Lock()
			ids = append(ids, got...)
			idsMu.Unlock()
			time.Sleep(every)
		}
	}
	burst(15, 100*time.Millisecond) // results flowing
	stop := time.Now()
	if err := broker.Host.KillAll(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-broker.Proc.Done()
	restarted := false
	defer func() {
		if !restarted {
			tc.start(t, broker)
		}
	}()
	burst(25, 200*time.Millisecond) // the burst goes on while the broker is down
	time.Sleep(time.Until(stop.Add(30 * time.Second)))
	tc.start(t, broker)
	restarted = true
	if err := tc.WaitHealthy(context.Background(), broker, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	idsMu.Lock()
	defer idsMu.Unlock()
	r, _ := tc.outcome(t, ids, 3*time.Minute)
	r.outage = back.Sub(stop)
	r.recovery = r.lastCounted.Sub(back)
	after, _ := tc.monitorStats()
	r.dedup = after.Duplicates - before.Duplicates
	r.note = fmt.Sprintf("broker down %.1fs (killed, 30 s, then its start); 'recovery' = broker healthy -> last result counted", back.Sub(stop).Seconds())
	tc.checkOnce(t, ids)
	return r
}

// temporalKilled: the Temporal server is SIGKILLed with jobs in flight and started again on the
// same PostgreSQL.
func (tc *testCluster) temporalKilled(t *testing.T) faultRow {
	server := tc.Instance("temporal")
	reqs := make([]jobs.Request, 8)
	for i := range reqs {
		reqs[i] = tc.job(t, "matrix_multiply", `{"size": 512, "iterations": 600}`)
	}
	ids := tc.submitJobs(t, reqs...)
	tc.running(t, ids, 2, time.Minute)
	kill := time.Now()
	tc.Kill(server)
	tc.start(t, server)
	if err := tc.WaitHealthy(context.Background(), server, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	r, _ := tc.outcome(t, ids, 3*time.Minute)
	r.outage = back.Sub(kill)
	r.recovery = r.lastCounted.Sub(kill)
	runs := tc.kernelRuns(ids)
	r.note = fmt.Sprintf("'recovery' = kill -> all counted; ≥2 of 8 running at the kill; frontend back after %.1fs; kernels run to completion per job: %v", back.Sub(kill).Seconds(), histogram(runs, ids))
	tc.checkOnce(t, ids)
	tc.checkRunOnce(t, ids)
	return r
}

// postgresRestarted: PostgreSQL is stopped (fast shutdown, as `docker restart` with the image's
// SIGINT) and started again while jobs run.
func (tc *testCluster) postgresRestarted(t *testing.T) faultRow {
	pg := tc.Instance("postgresql")
	reqs := make([]jobs.Request, 8)
	for i := range reqs {
		reqs[i] = tc.job(t, "matrix_multiply", `{"size": 512, "iterations": 600}`)
	}
	ids := tc.submitJobs(t, reqs...)
	tc.running(t, ids, 2, time.Minute)
	stop := time.Now()
	tc.Stop(pg, 30*time.Second)
	tc.start(t, pg)
	if err := tc.WaitHealthy(context.Background(), pg, time.Minute); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	r, _ := tc.outcome(t, ids, 3*time.Minute)
	r.outage = back.Sub(stop)
	r.recovery = r.lastCounted.Sub(stop)
	r.note = fmt.Sprintf("'recovery' = stop -> all counted; ≥2 of 8 running at the stop; kernels run to completion per job: %v", histogram(tc.kernelRuns(ids), ids))
	tc.checkOnce(t, ids)
	tc.checkRunOnce(t, ids)
	return r
}

// monitorKilled: the monitor host's processes are SIGKILLed while results stream in, and the
// monitor started again on its store: the counts are exact.
func (tc *testCluster) monitorKilled(t *testing.T) faultRow {
	mon := tc.Instance("monitor")
	before, err := tc.monitorStats()
	if err != nil {
		t.Fatal(err)
	}
	ids := tc.submitJobs(t, tc.tinyJobs(t, 100)...)
	atKill := 0
	waitFor(t, "the monitor to count 20 of the burst", 2*time.Minute, func() bool {
		s, err := tc.monitorStats()
		atKill = s.Results - before.Results
		return err == nil && atKill >= 20
	})
	kill := time.Now()
	if err := mon.Host.KillAll(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-mon.Proc.Done()
	tc.start(t, mon)
	if err := tc.WaitHealthy(context.Background(), mon, time.Minute); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	r, _ := tc.outcome(t, ids, 2*time.Minute)
	r.outage = back.Sub(kill)
	r.recovery = r.lastCounted.Sub(kill)
	after, _ := tc.monitorStats()
	r.dedup = after.Duplicates // the counter starts from zero at each start
	r.note = fmt.Sprintf("'recovery' = kill -> all counted; killed when %d of the burst were counted; the store has one line per job", atKill)
	tc.checkOnce(t, ids)
	return r
}

// schedulerCut: the scheduler host loses its link; jobs submitted meanwhile wait (none is
// scheduled) and all start once it is back.
func (tc *testCluster) schedulerCut(t *testing.T) faultRow {
	h := tc.Net.Host("sched")
	cut := time.Now()
	if err := h.Cut(); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			h.Heal() //nolint:errcheck
		}
	}()
	ids := tc.submitJobs(t, tc.tinyJobs(t, 10)...)
	// The cut lasts 15 s; during it no job may get to a worker.
	time.Sleep(time.Until(cut.Add(15 * time.Second)))
	if counts, err := tc.monitorCounts(ids); err != nil || len(counts) != 0 {
		t.Errorf("during the cut the monitor got %d of the jobs (err %v): want none", len(counts), err)
	}
	if err := h.Heal(); err != nil {
		t.Fatal(err)
	}
	healed = true
	heal := time.Now()
	r, _ := tc.outcome(t, ids, 3*time.Minute)
	r.outage = heal.Sub(cut)
	r.recovery = r.lastCounted.Sub(heal)
	var first time.Time
	for _, id := range ids {
		hist := tc.history(t, id)
		if hist.scheduled.Before(heal) {
			t.Errorf("%s: Execute scheduled at %s, before the scheduler host was back (%s)", id, hist.scheduled.Format(time.RFC3339Nano), heal.Format(time.RFC3339Nano))
		}
		if first.IsZero() || hist.scheduled.Before(first) {
			first = hist.scheduled
		}
	}
	r.note = fmt.Sprintf("none scheduled during the %.0fs cut; first scheduled %.1fs after the link came back; 'recovery' = link back -> all counted", heal.Sub(cut).Seconds(), first.Sub(heal).Seconds())
	tc.checkOnce(t, ids)
	return r
}

// histogram says how many jobs ran to completion 0, 1, 2... times: "1x8".
func histogram(runs map[string]int, ids []string) string {
	byCount := map[int]int{}
	for _, id := range ids {
		byCount[runs[id]]++
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(byCount)) {
		parts = append(parts, fmt.Sprintf("%dx%d", n, byCount[n]))
	}
	return strings.Join(parts, " ")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
