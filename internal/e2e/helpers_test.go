package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/internal/temporalx"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// process is a binary from bin/ running for one test.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProcess runs bin/<binary> args...; the test's cleanup stops it (SIGTERM, then SIGKILL).
func (e *environment) startProcess(t testing.TB, name, binary string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(e.logDir, strings.ReplaceAll(fmt.Sprintf("%s-%s.log", t.Name(), name), "/", "_"))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(e.bin, binary), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "OPENBLAS_NUM_THREADS=1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(40 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (%s) ---\n%s", name, logPath, testutil.TailLines(string(b), 40))
		}
	})
	return p
}

func (p *process) signal(s syscall.Signal) {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(s) //nolint:errcheck
	}
}

func (e *environment) commonArgs() []string {
	return []string{"--temporal-address", e.address, "--rabbitmq-url", e.rabbitURL, "--result-queue", e.resultQueue,
		"--log-queue", e.logQueue()}
}

// logQueue carries the environment's job logs, from its workers to its monitors.
func (e *environment) logQueue() string { return e.resultQueue + "_logs" }

// startWorker runs `worker --role role` with extra flags.
func (e *environment) startWorker(t testing.TB, role, id string, extra ...string) *process {
	args := append([]string{"--role", role, "--id", id, "--log-format", "json"}, e.commonArgs()...)
	return e.startProcess(t, id, "worker", append(args, extra...)...)
}

// starter runs the starter binary to completion and returns its stdout, stderr and exit code.
func (e *environment) starter(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// The address goes before a "--", after which a command job's program begins.
	at := len(args)
	for i, a := range args {
		if a == "--" {
			at = i
			break
		}
	}
	full := append(append(append([]string{}, args[:at]...), "--temporal-address", e.address), args[at:]...)
	return e.starterRaw(t, full...)
}

// dial returns a Temporal client for the test's dev server.
func (e *environment) dial(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: e.address, Logger: temporalx.Logger(zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// results collects the messages of the result queue, by job ID, for the whole test run.
type results struct {
	mu      sync.Mutex
	byJob   map[string][]jobs.Result
	headers map[string]amqp.Delivery
}

var (
	collectorOnce sync.Once
	collector     *results
)

// resultsOf returns the results consumed from the queue so far for id, waiting up to timeout
// for at least one.
func (e *environment) resultsOf(t testing.TB, id string, timeout time.Duration) []jobs.Result {
	t.Helper()
	collectorOnce.Do(func() { collector = e.consume(t) })
	deadline := time.Now().Add(timeout)
	for {
		collector.mu.Lock()
		got := append([]jobs.Result(nil), collector.byJob[id]...)
		collector.mu.Unlock()
		if len(got) > 0 || time.Now().After(deadline) {
			if len(got) == 0 {
				t.Fatalf("no result for %s in %s within %s", id, e.resultQueue, timeout)
			}
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// delivery returns the AMQP delivery that carried id's result (properties included).
func (e *environment) delivery(id string) (amqp.Delivery, bool) {
	collector.mu.Lock()
	defer collector.mu.Unlock()
	d, ok := collector.headers[id]
	return d, ok
}

func (e *environment) consume(t testing.TB) *results {
	rc := config.RabbitMQ{URL: e.rabbitURL, Queue: e.resultQueue}
	conn, err := rabbit.Dial(rc, "e2e-collector")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := rabbit.Declare(ch, rc); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(e.resultQueue, "e2e", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &results{byJob: map[string][]jobs.Result{}, headers: map[string]amqp.Delivery{}}
	go func() { // ends when the connection closes at the end of the run
		for d := range deliveries {
			var res jobs.Result
			if err := json.Unmarshal(d.Body, &res); err == nil {
				r.mu.Lock()
				r.byJob[res.JobID] = append(r.byJob[res.JobID], res)
				r.headers[res.JobID] = d
				r.mu.Unlock()
			}
			d.Ack(false) //nolint:errcheck
		}
	}()
	return r
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// starterRaw runs the starter without adding the test server's address.
func (e *environment) starterRaw(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "starter"), args...)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("starter %v: %v", args, err)
	}
	return o.String(), se.String(), code
}

func kernelsRegistry() *jobs.Kinds { return builtin.Kinds() }
