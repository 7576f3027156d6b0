package monitor

// Tests against a real RabbitMQ. They run when GPUJOBS_E2E=1 (make test starts the broker and
// sets it) and skip otherwise, so `go test ./...` works on a bare machine. Each test uses its
// own queue (and deletes it); the broker-restart test runs a private RabbitMQ node, so it never
// stops the broker that other tests and developers share.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// testQueue returns a fresh result-queue config; the queue, its .dlq and .dlx go at cleanup.
func testQueue(t testing.TB, url string) config.RabbitMQ {
	t.Helper()
	rc := config.RabbitMQ{URL: url, Queue: "monitor_test_" + testutil.RandomHex(4), QueueType: "classic"}
	t.Cleanup(func() { testutil.DeleteQueues(rc.URL, rc.Queue) })
	return rc
}

// publish sends bodies as persistent messages and waits for the broker's confirms.
func publish(t testing.TB, rc config.RabbitMQ, bodies ...[]byte) {
	t.Helper()
	if err := publishAll(rc, bodies); err != nil {
		t.Fatal(err)
	}
}

func publishAll(rc config.RabbitMQ, bodies [][]byte) error {
	conn, err := amqp.Dial(rc.URL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := rabbit.Declare(ch, rc); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const window = 2000 // confirms outstanding at once
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	wait := func() error {
		for _, dc := range pending {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("broker nacked a message")
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, b := range bodies {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", rc.Queue, false, false,
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: b})
		if err != nil {
			return err
		}
		pending = append(pending, dc)
		if len(pending) == window {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// queueDepth returns the ready messages of a queue.
func queueDepth(t testing.TB, url, queue string) int {
	t.Helper()
	q, err := testutil.Channel(t, url).QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// inProcess is the consumer, store and aggregates of a monitor, run inside the test.
type inProcess struct {
	agg      *Aggregator
	store    *Store
	consumer *Consumer
	cancel   func()
	done     chan error
}

func startInProcess(t testing.TB, opts ConsumerOptions, storePath string) *inProcess {
	return startInProcessHook(t, opts, storePath, nil)
}

// startInProcessHook runs onBatch after each batch is stored and counted, before it is acked.
func startInProcessHook(t testing.TB, opts ConsumerOptions, storePath string, onBatch func()) *inProcess {
	t.Helper()
	agg := NewAggregator(NewMetrics())
	store, _, err := OpenStore(storePath, func(r Record) { agg.Add(r.Result) })
	if err != nil {
		t.Fatal(err)
	}
	logger := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		logger = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &inProcess{agg: agg, store: store, consumer: NewConsumer(opts, store, agg, logger, onBatch), cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- m.consumer.Run(ctx) }()
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *inProcess) stop(t testing.TB) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil {
		t.Errorf("consumer: %v", err)
	}
	m.store.Close()
}

func storeLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestSameResultPublishedTwiceIsCountedOnce(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	path := filepath.Join(t.TempDir(), "results.jsonl")
	m := startInProcess(t, ConsumerOptions{RabbitMQ: rc, Prefetch: 10}, path)
	rs := fixtureResults(2, 100, t0)
	again := rs[0]
	again.WorkerID = "another-worker" // a retried publish of the same job: the first one counts
	publish(t, rc, mustJSON(rs[0]), mustJSON(rs[0]), mustJSON(again), mustJSON(rs[1]))
	testutil.WaitFor(t, "four deliveries settled", 10*time.Second, func() bool { return m.consumer.Ingested() == 4 })
	if tt := m.agg.Summary().Totals; tt.Results != 2 || tt.Duplicates != 2 {
		t.Errorf("results %d duplicates %d, want 2 and 2", tt.Results, tt.Duplicates)
	}
	lines := storeLines(t, path)
	if len(lines) != 2 || !strings.Contains(lines[0], rs[0].WorkerID) || strings.Contains(lines[0], "another-worker") {
		t.Errorf("store:\n%s", strings.Join(lines, "\n"))
	}
	if n := queueDepth(t, rc.URL, rc.Queue); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

func TestMalformedMessageIsDeadLetteredAndConsumingGoesOn(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	m := startInProcess(t, ConsumerOptions{RabbitMQ: rc, Prefetch: 10}, filepath.Join(t.TempDir(), "results.jsonl"))
	rs := fixtureResults(2, 101, t0)
	bad := [][]byte{[]byte("not json {"), []byte(`{"job_type":"matrix_multiply","status":"completed"}`)}
	publish(t, rc, bad[0], bad[1], mustJSON(rs[0]))
	dlq := rabbit.DeadLetterQueue(rc.Queue)
	testutil.WaitFor(t, "two messages in "+dlq, 10*time.Second, func() bool { return queueDepth(t, rc.URL, dlq) == 2 })
	publish(t, rc, mustJSON(rs[1]))
	testutil.WaitFor(t, "both valid results counted", 10*time.Second, func() bool { return m.agg.Len() == 2 })
	if tt := m.agg.Summary().Totals; tt.Malformed != 2 || tt.Results != 2 {
		t.Errorf("malformed %d results %d", tt.Malformed, tt.Results)
	}

	// The dead letters are the originals, once each (never requeued in a loop), with the reason.
	reasons := []string{"not a result: invalid character 'o' in literal null", "not a result: job_id is missing"}
	for i, d := range testutil.Drain(t, rc.URL, dlq) {
		if i >= len(bad) {
			t.Errorf("more dead letters than bad messages: %q", d.Body)
			continue
		}
		if string(d.Body) != string(bad[i]) {
			t.Errorf("dead letter %d: %q, want %q", i, d.Body, bad[i])
		}
		if r, _ := d.Headers[RejectReasonHeader].(string); !strings.HasPrefix(r, reasons[i]) ||
			d.Headers[RejectKindHeader] != "malformed" || d.Headers[RejectQueueHeader] != rc.Queue {
			t.Errorf("dead letter %d headers %v, want reason %q", i, d.Headers, reasons[i])
		}
	}
	if n := queueDepth(t, rc.URL, rc.Queue); n != 0 {
		t.Errorf("%d messages left in %s", n, rc.Queue)
	}
}

func TestQueueDeclaredWithOtherArgumentsStopsTheConsumer(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	ch := testutil.Channel(t, rc.URL)
	if _, err := ch.QueueDeclare(rc.Queue, true, false, false, false, nil); err != nil { // no dead-lettering
		t.Fatal(err)
	}
	agg := NewAggregator(nil)
	store, _, err := OpenStore(filepath.Join(t.TempDir(), "results.jsonl"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := NewConsumer(ConsumerOptions{RabbitMQ: rc}, store, agg, zap.NewNop(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, errTopology) || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
		t.Errorf("Run: %v, want a topology error at once rather than retrying forever", err)
	}
}

// monitorBinary builds the monitor command (or takes GPUJOBS_BIN's, as make test builds it).
func monitorBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("GPUJOBS_BIN"); dir != "" {
		if p := filepath.Join(dir, "monitor"); fileExists(p) {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "monitor")
	cmd := exec.Command("go", "build", "-o", out, "github.com/gpujobs/gpujobs/monitor")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build monitor: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// serveProcess is a `monitor serve` process.
type serveProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	api  string
	log  string
}

func startServe(t *testing.T, bin string, rc config.RabbitMQ, store string, extra ...string) *serveProcess {
	t.Helper()
	addr := testutil.FreeAddr(t)
	logPath := filepath.Join(t.TempDir(), "serve.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The log queue too is the test's own, never the shared broker's log_queue.
	logQueue := rc.Queue + "_logs"
	t.Cleanup(func() { testutil.DeleteQueues(rc.URL, logQueue) })
	args := append([]string{"serve", "--addr", addr, "--store", store, "--rabbitmq-url", rc.URL, "--result-queue", rc.Queue,
		"--log-queue", logQueue, "--log-format", "json"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, done: make(chan struct{}), api: "http://" + addr, log: logPath}
	go func() {
		cmd.Wait() //nolint:errcheck // the exit status is the test's to judge
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- monitor serve log ---\n%s", testutil.TailLines(string(b), 30))
		}
	})
	testutil.WaitFor(t, "monitor serve to answer /healthz", 30*time.Second, func() bool {
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("monitor serve exited:\n%s", b)
		default:
		}
		var h Health
		return getJSONErr(p.api+"/healthz", &h) == nil && h.RabbitMQ == "connected" && h.LogQueue == "connected"
	})
	return p
}

func (p *serveProcess) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill() //nolint:errcheck // SIGKILL: no chance to flush or ack anything
		<-p.done
	}
}

func (p *serveProcess) health(t *testing.T) Health {
	t.Helper()
	var h Health
	if err := getJSONErr(p.api+"/healthz", &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestMonitorKilledMidwayCountsEveryResultOnce publishes 1,000 results (and some again) while a
// real `monitor serve` consumes them, SIGKILLs it midway, publishes the rest while it is down,
// restarts it on the same store, and checks the aggregates against a recomputation from the
// published set.
func TestMonitorKilledMidwayCountsEveryResultOnce(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	bin := monitorBinary(t)
	store := filepath.Join(t.TempDir(), "results.jsonl")
	results := fixtureResults(1000, 102, t0)
	// Small batches: many fsync-then-ack steps for the kill to fall between.
	flags := []string{"--prefetch", "20", "--batch", "10"}
	mon := startServe(t, bin, rc, store, flags...)

	// Publish the first 600 while the monitor consumes them, and SIGKILL it once it has counted
	// 300: results are then in flight between the broker, the monitor's batch and its file.
	const first = 600
	published := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < first && err == nil; i += 25 {
			bodies := make([][]byte, 0, 25)
			for _, r := range results[i : i+25] {
				bodies = append(bodies, mustJSON(r))
			}
			err = publishAll(rc, bodies)
		}
		published <- err
	}()
	killedAt := 0
	testutil.WaitFor(t, "the monitor to count 300 results", 60*time.Second, func() bool {
		killedAt = mon.health(t).Results
		return killedAt >= 300
	})
	mon.kill()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if killedAt >= first {
		t.Fatalf("the monitor was not killed midway: it had counted %d of %d", killedAt, first)
	}
	t.Logf("SIGKILL after %d results were counted", killedAt)
	// The rest, and 50 results published a second time, while the monitor is down.
	var bodies [][]byte
	for _, r := range results[first:] {
		bodies = append(bodies, mustJSON(r))
	}
	for i := 0; i < 50; i++ {
		bodies = append(bodies, mustJSON(results[i*7]))
	}
	publish(t, rc, bodies...)

	mon = startServe(t, bin, rc, store, flags...)
	testutil.WaitFor(t, "all 1000 results counted after the restart", 60*time.Second, func() bool {
		return mon.health(t).Results >= len(results) && queueDepth(t, rc.URL, rc.Queue) == 0
	})

	// Exactly once in the store.
	lines := storeLines(t, store)
	seen := map[string]bool{}
	for _, l := range lines {
		rec, err := ParseRecord([]byte(l))
		if err != nil {
			t.Fatalf("store line %q: %v", l, err)
		}
		if seen[rec.Result.JobID] {
			t.Errorf("%s stored twice", rec.Result.JobID)
		}
		seen[rec.Result.JobID] = true
	}
	for _, r := range results {
		if !seen[r.JobID] {
			t.Errorf("%s lost", r.JobID)
		}
	}
	if len(lines) != len(results) {
		t.Errorf("%d lines in the store, want %d", len(lines), len(results))
	}

	// The API's aggregates equal a recomputation from the published set.
	var got Stats
	var gotSpeed Speedups
	if err := getJSONErr(mon.api+"/api/stats", &got); err != nil {
		t.Fatal(err)
	}
	if err := getJSONErr(mon.api+"/api/speedup", &gotSpeed); err != nil {
		t.Fatal(err)
	}
	want := NewAggregator(nil)
	want.Add(results...)
	ws, wsp := want.Stats(), want.Speedup()
	if got.Totals.Duplicates < 50 {
		t.Errorf("%d duplicates counted, want at least the 50 re-published", got.Totals.Duplicates)
	}
	got.Totals.Duplicates = 0
	if got.Totals != ws.Totals {
		t.Errorf("totals %+v, recomputed %+v", got.Totals, ws.Totals)
	}
	for _, x := range []struct {
		name      string
		got, want any
	}{
		{"groups", got.Groups, ws.Groups},
		{"failures", got.Failures, ws.Failures},
		{"fallbacks", got.Fallbacks, ws.Fallbacks},
		{"throughput series", got.Throughput.Series, ws.Throughput.Series},
		{"speedup", gotSpeed.JobTypes, wsp.JobTypes},
	} {
		if g, w := string(mustJSON(x.got)), string(mustJSON(x.want)); g != w {
			t.Errorf("%s differ from the recomputation:\n got %s\nwant %s", x.name, g, w)
		}
	}
	if got.Throughput.Overall != ws.Throughput.Overall {
		t.Errorf("overall throughput %v, recomputed %v", got.Throughput.Overall, ws.Throughput.Overall)
	}

	// And, without the aggregator's code, the counts and mean times per job type and worker.
	type key struct{ jt, wt string }
	count, sum := map[key]int{}, map[key]float64{}
	for _, r := range results {
		k := key{r.JobType, r.WorkerType}
		if k.wt == "" {
			k.wt = WorkerNone
		}
		count[k]++
		if r.Status == jobs.StatusCompleted {
			sum[k] += r.ProcessingTime
		}
	}
	for _, g := range got.Groups {
		k := key{g.JobType, g.WorkerType}
		if g.Results != count[k] {
			t.Errorf("%v: %d results, published %d", k, g.Results, count[k])
		}
		if g.ProcessingTime != nil && !near(g.ProcessingTime.Avg, sum[k]/float64(g.Completed)) {
			t.Errorf("%v: avg %v, published %v", k, g.ProcessingTime.Avg, sum[k]/float64(g.Completed))
		}
		delete(count, k)
	}
	if len(count) > 0 {
		t.Errorf("groups missing from the API: %v", count)
	}
}

func TestConsumerReconnectsWhenRabbitMQRestarts(t *testing.T) {
	testutil.SharedBroker(t) // the same opt-in as the other broker tests
	b := testutil.StartBroker(t)
	rc := testQueue(t, b.URL)
	path := filepath.Join(t.TempDir(), "results.jsonl")
	// The first batch holds until the broker is down: it is stored but cannot be acked, the
	// worst moment for a restart.
	stored, release := make(chan struct{}), make(chan struct{})
	first := true
	hook := func() {
		if first {
			first = false
			close(stored)
			<-release
		}
	}
	m := startInProcessHook(t, ConsumerOptions{RabbitMQ: rc, Prefetch: 50, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}, path, hook)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release) // let the consumer stop
		}
	})
	testutil.WaitFor(t, "the consumer to connect", 10*time.Second, m.consumer.Connected)
	results := fixtureResults(600, 103, t0)
	var bodies [][]byte
	for _, r := range results[:400] {
		bodies = append(bodies, mustJSON(r))
	}
	publish(t, rc, bodies...)
	select {
	case <-stored:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch stored")
	}
	countWhenStopped := m.agg.Len()

	if err := b.Ctl("stop_app"); err != nil {
		t.Fatal(err)
	}
	close(release)
	testutil.WaitFor(t, "the consumer to see the broker go", 30*time.Second, func() bool { return !m.consumer.Connected() })
	if err := b.Ctl("start_app"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the consumer to reconnect", 60*time.Second, m.consumer.Connected)
	bodies = bodies[:0]
	for _, r := range results[400:] {
		bodies = append(bodies, mustJSON(r))
	}
	publish(t, rc, bodies...)
	testutil.WaitFor(t, "all 600 results after the restart", 60*time.Second, func() bool { return m.agg.Len() == len(results) })
	testutil.WaitFor(t, "the queue to drain", 10*time.Second, func() bool { return queueDepth(t, rc.URL, rc.Queue) == 0 })
	tt := m.agg.Summary().Totals
	t.Logf("broker stopped with %d results counted; %d redelivered and recognised", countWhenStopped, tt.Duplicates)
	if countWhenStopped >= 400 || tt.Duplicates < int64(countWhenStopped) {
		t.Errorf("stopped at %d counted, %d duplicates: the stored, unacked batch should have come back", countWhenStopped, tt.Duplicates)
	}
	if lines := storeLines(t, path); len(lines) != len(results) || tt.Results != len(results) {
		t.Errorf("%d lines in the store, %d counted, want %d", len(lines), tt.Results, len(results))
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// getJSONErr fetches url into v.
func getJSONErr(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
