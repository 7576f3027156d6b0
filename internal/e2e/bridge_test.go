package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// seedClient publishes jobs as the original system's client does: it declares the queue itself,
// durable and without arguments, on every connect, and publishes persistent JSON messages.
type seedClient struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newSeedClient(t *testing.T, url, queue string) *seedClient {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatalf("the original client's queue_declare(%s, durable=True) failed: %v", queue, err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &seedClient{conn: conn, ch: ch}
}

func (s *seedClient) publish(t *testing.T, queue string, body []byte, messageID string) {
	t.Helper()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: messageID, Body: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctxTimeout(t, 10*time.Second)); err != nil || !ok {
		t.Fatalf("publish not confirmed: %v", err)
	}
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// serveMonitor runs `monitor serve` on its own result queue and returns its API's base URL.
func (e *environment) serveMonitor(t *testing.T, queue string) string {
	t.Helper()
	addr := testutil.FreeAddr(t)
	e.startProcess(t, "monitor", "monitor", "serve", "--addr", addr, "--store", filepath.Join(t.TempDir(), "results.jsonl"),
		"--rabbitmq-url", e.rabbitURL, "--result-queue", queue)
	api := "http://" + addr
	testutil.WaitFor(t, "monitor serve to answer", 15*time.Second, func() bool {
		code, _ := httpStatus(api + "/healthz")
		return code == http.StatusOK
	})
	return api
}

// The original system's producers, unchanged: 1,000 seed-format messages (and 50 of them again,
// and 8 that cannot be jobs) published to the job queue while the bridge is SIGKILLed once and
// restarted. Every job runs exactly once, the monitor counts 1,000, the bad ones are in the
// dead-letter queue with their reasons.
func TestBridgeStartsSeedMessagesOnceThroughAKill(t *testing.T) {
	e := env
	run := testutil.RandomHex(4)
	queue, results := "e2e_jobs_"+run, "e2e_bridge_results_"+run
	t.Cleanup(func() {
		testutil.DeleteQueues(e.rabbitURL, queue)
		testutil.DeleteQueues(e.rabbitURL, results)
	})
	args := []string{"--temporal-address", e.address, "--rabbitmq-url", e.rabbitURL, "--result-queue", results, "--log-format", "json"}
	e.startProcess(t, "sched-b1", "worker", append([]string{"--role", "scheduler", "--id", "sched-b1"}, args...)...)
	e.startWorker(t, "cpu", "cpu-b1")
	e.startWorker(t, "cpu", "cpu-b2")
	api := e.serveMonitor(t, results)
	c := e.dial(t)
	since := time.Now().UTC().Add(-time.Second)

	// The jobs: a job_id, else a message_id, else only the body; the seed's vector_add spelling;
	// naive ISO submit times; prefer_gpu true (no GPU worker: a labelled CPU fallback), false, absent.
	const total = 1000
	type msg struct {
		body      []byte
		messageID string
	}
	var msgs []msg
	want := map[string]bool{}
	for i := range total {
		m := map[string]any{"job_type": "vector_addition", "size": 1000, "iterations": 1, "seed": i}
		id := ""
		switch i % 4 {
		case 0:
			id = fmt.Sprintf("seed-%s-%04d", run, i)
			m["job_id"] = id
		case 1:
			id = fmt.Sprintf("msg-%s-%04d", run, i)
		case 2:
			m["submit_time"] = time.Now().Add(-time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000000")
		case 3:
			id = fmt.Sprintf("seed-%s-%04d", run, i)
			m["job_id"], m["job_type"] = id, "vector_add"
		}
		if i%3 == 0 {
			m["prefer_gpu"] = i%2 == 0
		}
		body, _ := json.Marshal(m)
		mid := ""
		if i%4 == 1 {
			mid = id
		}
		if i%4 == 2 {
			sum := sha256.Sum256(body)
			id = "job-" + hex.EncodeToString(sum[:6])
		}
		want[id] = true
		msgs = append(msgs, msg{body, mid})
	}
	if len(want) != total {
		t.Fatalf("%d distinct job IDs for %d jobs", len(want), total)
	}
	bad := []struct{ body, reason string }{
		{`{"job_type": "vector_addition", "size": 1000`, "not_json"},
		{`[{"job_type": "vector_addition"}]`, "not_json"},
		{`{"size": 1000}`, "no_job_type"},
		{`{"job_type": "sorting", "size": 1000}`, "unknown_job_type"},
		{`{"job_type": "matrix_multiply", "size": -1}`, "invalid_params"},
		{`{"job_type": "vector_addition", "colour": "blue"}`, "invalid_params"},
		{`{"job_type": "vector_addition", "submit_time": "last tuesday"}`, "invalid_field"},
		{`{"job_type": "vector_addition", "prefer_gpu": "yes"}`, "invalid_field"},
	}
	wantReasons := map[string]int{}
	for _, b := range bad {
		wantReasons[b.reason]++
	}

	// The client declares the queue before the bridge exists, and publishes everything; then
	// the bridge starts, and a reconnecting client declares it again as before.
	pub := newSeedClient(t, e.rabbitURL, queue)
	for i, m := range msgs {
		pub.publish(t, queue, m.body, m.messageID)
		if i%125 == 0 {
			pub.publish(t, queue, []byte(bad[i/125].body), "")
		}
		if i%20 == 7 { // a client retrying: the same message again
			pub.publish(t, queue, m.body, m.messageID)
		}
	}
	published := total + total/20 + len(bad)
	health := testutil.FreeAddr(t)
	bridge1 := e.startWorker(t, "bridge", "bridge-1", "--job-queue", queue, "--health-addr", health)
	newSeedClient(t, e.rabbitURL, queue) // the same declaration the clients make on every connect

	// SIGKILL the bridge in the middle: at least 300 jobs started, the rest still queued or in
	// flight (started in Temporal but not yet acknowledged, or not yet started).
	testutil.WaitFor(t, "the bridge to start 300 jobs", 3*time.Minute, func() bool {
		v, _ := gauge(health, `gpujobs_bridge_messages_total{outcome="started"}`)
		return v >= 300
	})
	bridge1.signal(syscall.SIGKILL)
	<-bridge1.done
	health2 := testutil.FreeAddr(t)
	e.startWorker(t, "bridge", "bridge-2", "--job-queue", queue, "--health-addr", health2)

	var st monitor.Totals
	testutil.WaitFor(t, "the monitor to count 1,000 results", 5*time.Minute, func() bool {
		st = totals(t, api)
		return st.Results >= total
	})
	var page struct {
		Results []jobs.Result `json:"results"`
	}
	if !getJSON(t, api+"/api/results?limit=0", &page) {
		t.Fatal("/api/results unreadable")
	}
	counted := map[string]int{}
	fallbacks := 0
	for _, r := range page.Results {
		counted[r.JobID]++
		if r.Status != jobs.StatusCompleted || r.JobType != "vector_addition" {
			t.Errorf("result %s: %s %s %s", r.JobID, r.JobType, r.Status, r.Error)
		}
		if r.Fallback != "" {
			fallbacks++
		}
	}
	lost, extra, twice := 0, 0, 0
	for id := range want {
		switch counted[id] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	for id := range counted {
		if !want[id] {
			extra++
		}
	}
	t.Logf("published %d messages (%d jobs, %d repeats, %d invalid); the monitor counted %d results (%d completed, %d duplicates), %d fallbacks; lost %d, unexpected %d, counted twice %d",
		published, total, total/20, len(bad), st.Results, st.Completed, st.Duplicates, fallbacks, lost, extra, twice)
	// st.Duplicates is not checked: a result is delivered at least once (a confirm that comes
	// after the publisher gave up on it is published again), and the monitor counts it once.
	// That each message started one job is checked below, on Temporal's visibility.
	if lost != 0 || extra != 0 || twice != 0 || st.Results != total || st.Completed != total {
		t.Errorf("want every one of the %d jobs counted once and nothing else: lost %d, unexpected %d, twice %d, monitor %+v", total, lost, extra, twice, st)
	}

	// Each job ran once: exactly 1,000 job workflows were started in this test, one per job ID
	// (visibility lags a little behind the starts: wait until it has them all, then compare).
	var started int64
	testutil.WaitFor(t, "visibility to count the test's job workflows", 30*time.Second, func() bool {
		resp, err := c.CountWorkflow(ctxTimeout(t, 10*time.Second), &workflowservice.CountWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowType = 'JobWorkflow' AND StartTime >= '%s'", since.Format(time.RFC3339)),
		})
		started = resp.GetCount()
		return err == nil && started >= total
	})
	if started != total {
		t.Errorf("%d job workflows started during the test, want %d: a redelivered message started a job twice", started, total)
	}
	if code, body := httpStatus("http://" + health2 + "/readyz"); code != http.StatusOK {
		t.Errorf("the consuming bridge's /readyz: %d %s", code, body)
	}

	// The invalid messages sit in the dead-letter queue, each once, with its reason; the job
	// queue is empty.
	ch, err := pub.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	gotReasons := map[string]int{}
	for {
		d, ok, err := ch.Get(queue+".dlq", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		reason, _ := d.Headers["x-gpujobs-reason"].(string)
		kind, _, _ := strings.Cut(reason, ": ")
		gotReasons[kind]++
		if d.Headers["x-gpujobs-queue"] != queue || d.DeliveryMode != amqp.Persistent {
			t.Errorf("dead letter %q: headers %v, delivery mode %d", d.Body, d.Headers, d.DeliveryMode)
		}
	}
	if fmt.Sprint(gotReasons) != fmt.Sprint(wantReasons) {
		t.Errorf("dead letters by reason %v, want %v", gotReasons, wantReasons)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Errorf("job queue: %d messages left (%v), want 0", q.Messages, err)
	}
	if v, ok := gauge(health2, `gpujobs_bridge_dead_letters_total{reason="invalid_params"}`); !ok || v > 2 {
		t.Errorf("restarted bridge's invalid_params dead letters %v (%v): at most the 2 published", v, ok)
	}
	dups, _ := gauge(health2, `gpujobs_bridge_messages_total{outcome="duplicate"}`)
	t.Logf("the restarted bridge acknowledged %v messages whose job existed (redeliveries and repeats), started none of them again", dups)
}
