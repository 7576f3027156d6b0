package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// syncBuffer is a bytes.Buffer that a running process writes while the test reads it.
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

// TestStarterLogsFollowsAJobLive: a job's lines, written through the workers' Writer while its
// workflow runs, show in `starter logs --follow` as they are written (each one before the next is
// written), stdout on stdout and stderr on stderr, across a monitor SIGKILL and restart and a
// second attempt, each line once; when the job ends, the command exits with the job's outcome.
// Then `starter logs` prints the stored log, and the monitor's token is required throughout.
// The job is a JobWorkflow on a task queue that no worker polls (it runs until the test
// terminates it), so the test decides when it ends.
func TestStarterLogsFollowsAJobLive(t *testing.T) {
	e := env
	queue := "e2e_logs_" + testutil.RandomHex(4)
	rc := config.RabbitMQ{URL: e.rabbitURL, Queue: queue + "_logs"}
	t.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, queue); testutil.DeleteQueues(e.rabbitURL, rc.Queue) })
	const token = "e2e-logs-token-9a8b7c6d5e4f3a2b"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	api := "http://" + addr
	store := filepath.Join(t.TempDir(), "results.jsonl")
	serve := func() *process {
		p := e.startProcess(t, "monitor", "monitor", "serve", "--addr", addr, "--store", store, "--rabbitmq-url", e.rabbitURL,
			"--result-queue", queue, "--log-queue", rc.Queue, "--token-file", tokenFile, "--log-format", "json")
		testutil.WaitFor(t, "monitor serve to consume the log queue", 30*time.Second, func() bool {
			b, _ := os.ReadFile(p.log)
			return strings.Contains(string(b), "consuming job logs")
		})
		return p
	}
	mon := serve()

	c := e.dial(t)
	jobID := "job-" + testutil.RandomHex(6)
	req := jobs.Request{JobID: jobID, JobType: "vector_addition", Params: []byte(`{"size":1000}`), SubmitTime: time.Now().UTC()}
	if _, err := c.ExecuteWorkflow(ctxTimeout(t, 10*time.Second), client.StartWorkflowOptions{ID: jobID, TaskQueue: queue + "_nobody"},
		workflows.JobWorkflowName, req); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr syncBuffer
	follow := exec.Command(filepath.Join(e.bin, "starter"), "logs", jobID, "--follow", "--monitor", api, "--temporal-address", e.address)
	follow.Env = append(os.Environ(), "MONITOR_TOKEN="+token)
	follow.Stdout, follow.Stderr = &stdout, &stderr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { follow.Wait(); close(exited) }() //nolint:errcheck // the exit code is checked below
	t.Cleanup(func() {
		follow.Process.Kill() //nolint:errcheck
		<-exited
		if t.Failed() {
			t.Logf("--- starter logs stdout ---\n%s\n--- stderr ---\n%s", stdout.String(), stderr.String())
		}
	})

	pub := joblogs.NewPublisher(rc, "e2e-logs", zaptest.NewLogger(t))
	defer pub.Close()
	shows := func(buf *syncBuffer, text string) {
		t.Helper()
		testutil.WaitFor(t, "starter logs --follow to show "+text, 30*time.Second, func() bool { return strings.Contains(buf.String(), text+"\n") })
	}
	w1 := pub.Job(jobID, 1, joblogs.Limits{})
	live := []struct {
		stream, text string
	}{{joblogs.StreamStdout, "epoch 1 loss=2.31"}, {joblogs.StreamStderr, "warning: slow disk"}, {joblogs.StreamStdout, "epoch 2 loss=1.87"}}
	for _, l := range live {
		w1.Write(l.stream, l.text)
		buf := &stdout
		if l.stream == joblogs.StreamStderr {
			buf = &stderr
		}
		shows(buf, l.text) // shown before the next line is written: live
	}
	if err := w1.Close(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}

	// The monitor dies; the job's retry writes while it is down; a new monitor takes over.
	mon.signal(syscall.SIGKILL)
	<-mon.done
	w2 := pub.Job(jobID, 2, joblogs.Limits{})
	w2.Write(joblogs.StreamGpujobs, "restored from checkpoint: epoch 2")
	w2.Write(joblogs.StreamStdout, "epoch 3 loss=1.12")
	serve()
	shows(&stdout, "epoch 3 loss=1.12")
	w2.Write(joblogs.StreamStdout, "done")
	shows(&stdout, "done")
	if err := w2.Close(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatalf("starter logs --follow exited while the job runs: %v", follow.ProcessState)
	default:
	}

	if err := c.TerminateWorkflow(ctxTimeout(t, 10*time.Second), jobID, "", "the test ends the job"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("starter logs --follow did not exit after the job ended")
	}
	if code := follow.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit code %d, want 2 (the job was terminated: failed)", code)
	}
	wantOut := "epoch 1 loss=2.31\nepoch 2 loss=1.87\nepoch 3 loss=1.12\ndone\n"
	wantErr := "warning: slow disk\n[gpujobs] attempt 2\n[gpujobs] restored from checkpoint: epoch 2\n"
	if stdout.String() != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), wantOut)
	}
	if stderr.String() != wantErr+"starter: "+jobID+" failed (Terminated: job terminated)\n" {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), wantErr)
	}

	// The stored log, without --follow; the token is required.
	run := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(filepath.Join(e.bin, "starter"), append([]string{"logs", jobID, "--monitor", api}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var o, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &se
		cmd.Run() //nolint:errcheck // the exit code is checked
		return o.String(), se.String(), cmd.ProcessState.ExitCode()
	}
	if o, se, code := run([]string{"MONITOR_TOKEN_FILE=" + tokenFile}); code != 0 || o != wantOut || se != wantErr {
		t.Errorf("starter logs: exit %d\nstdout:\n%s\nstderr:\n%s", code, o, se)
	}
	if o, _, code := run([]string{"MONITOR_TOKEN=" + token}, "--attempt", "2", "--json"); code != 0 || strings.Count(o, "\n") != 3 || !strings.Contains(o, `"attempt":2,"seq":3,"stream":"stdout"`) {
		t.Errorf("starter logs --attempt 2 --json: exit %d\n%s", code, o)
	}
	if _, se, code := run([]string{"MONITOR_TOKEN="}); code != 1 || !strings.Contains(se, "MONITOR_TOKEN") || strings.Count(se, "\n") != 1 {
		t.Errorf("starter logs without the token: exit %d, %q", code, se)
	}
	if _, se, code := run([]string{"MONITOR_TOKEN=" + token}, "--token", "wrong-token-0000000000"); code != 1 || !strings.Contains(se, "not the monitor's") {
		t.Errorf("starter logs with a wrong token: exit %d, %q", code, se)
	}
	if _, se, code := run([]string{"MONITOR_TOKEN=" + token}, "--attempt", "-1"); code != 1 || !strings.Contains(se, "--attempt") {
		t.Errorf("starter logs --attempt -1: exit %d, %q", code, se)
	}
	cmd := exec.Command(filepath.Join(e.bin, "starter"), "logs", "job-none-"+testutil.RandomHex(3), "--monitor", api)
	cmd.Env = append(os.Environ(), "MONITOR_TOKEN="+token)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no log lines stored") {
		t.Errorf("starter logs of a job without a log: %v %s", err, out)
	}
}
