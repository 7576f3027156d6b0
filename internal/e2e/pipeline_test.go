package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// submitJSON runs `starter submit ... --wait --json` and returns the one result it prints.
func (e *environment) submitJSON(t *testing.T, args ...string) jobs.Result {
	t.Helper()
	out, stderr, code := e.starter(t, append([]string{"submit", "--wait", "--json"}, args...)...)
	var r jobs.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("starter submit %v: exit %d, stdout %q, stderr %q: %v", args, code, out, stderr, err)
	}
	if r.Status == jobs.StatusCompleted && code != 0 {
		t.Errorf("starter exit code %d for a completed job", code)
	}
	return r
}

func TestFourJobTypesThroughStarterAndRabbitMQ(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-1")
	e.startWorker(t, "cpu", "cpu-1")

	cases := []struct {
		args   []string
		metric string
	}{
		{[]string{"matrix_multiply", "--size", "96", "--iterations", "3"}, "gflops"},
		{[]string{"neural_network", "--epochs", "2", "--batch-size", "16", "--params", `{"samples": 256, "hidden_size": 32}`}, "final_loss"},
		{[]string{"vector_addition", "--size", "100000", "--iterations", "5"}, "gbps"},
		{[]string{"image_processing", "--batch-size", "2", "--image-size", "32", "--iterations", "2"}, "gflops"},
	}
	for _, j := range cases {
		r := e.submitJSON(t, append(j.args, "--cpu")...)
		if r.Status != jobs.StatusCompleted {
			t.Fatalf("%s: %+v", j.args[0], r)
		}
		pubs := e.resultsOf(t, r.JobID, 10*time.Second)
		if len(pubs) != 1 {
			t.Errorf("%s published %d times, want 1", r.JobID, len(pubs))
		}
		p := pubs[0]
		checkResult(t, p, j.args[0], j.metric)
		if p.WorkerType != "cpu" || p.RequestedDevice != "cpu" || p.Fallback != "" || p.WorkerID != "cpu-1" {
			t.Errorf("%s: worker %q/%q requested %q fallback %q", r.JobID, p.WorkerType, p.WorkerID, p.RequestedDevice, p.Fallback)
		}
		d, _ := e.delivery(r.JobID)
		if d.MessageId != r.JobID || d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" {
			t.Errorf("%s: message_id %q, delivery mode %d, content type %q: want job ID, persistent, JSON", r.JobID, d.MessageId, d.DeliveryMode, d.ContentType)
		}
	}
}

// checkResult checks that a published result carries every field the monitor relies on.
func checkResult(t *testing.T, r jobs.Result, jobType, metric string) {
	t.Helper()
	if err := jobs.ValidateJobID(r.JobID); err != nil {
		t.Error(err)
	}
	if r.JobType != jobType || r.Status != jobs.StatusCompleted || r.Error != "" {
		t.Errorf("%s: type %q status %q error %q", r.JobID, r.JobType, r.Status, r.Error)
	}
	if len(r.Params) == 0 || r.Device == "" || r.WorkerID == "" {
		t.Errorf("%s: params %s, device %q, worker %q", r.JobID, r.Params, r.Device, r.WorkerID)
	}
	if !(r.ProcessingTime > 0) || !(r.SetupTime > 0) || r.QueueTime < 0 {
		t.Errorf("%s: processing %v setup %v queue %v", r.JobID, r.ProcessingTime, r.SetupTime, r.QueueTime)
	}
	if r.SubmitTime.IsZero() || r.StartTime.Before(r.SubmitTime) || r.EndTime.Before(r.StartTime) {
		t.Errorf("%s: submit %v start %v end %v out of order", r.JobID, r.SubmitTime, r.StartTime, r.EndTime)
	}
	if _, ok := r.Metrics[metric]; !ok {
		t.Errorf("%s: metrics %v lack %s", r.JobID, r.Metrics, metric)
	}
	if jobType != "vector_addition" && r.BLAS == "" {
		t.Errorf("%s: blas backend not reported", r.JobID)
	}
	if r.Threads < 1 || r.Attempt < 1 || r.EstimatedTime <= 0 || r.ScheduleReason == "" {
		t.Errorf("%s: threads %d attempt %d estimate %v reason %q", r.JobID, r.Threads, r.Attempt, r.EstimatedTime, r.ScheduleReason)
	}
}

func TestGPUPreferredJobWithoutGPUWorkerIsLabelledFallback(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-2")
	e.startWorker(t, "cpu", "cpu-2")
	r := e.submitJSON(t, "vector_addition", "--size", "1000", "--iterations", "2", "--device", "gpu")
	if r.Status != jobs.StatusCompleted {
		t.Fatalf("%+v", r)
	}
	p := e.resultsOf(t, r.JobID, 10*time.Second)[0]
	if p.WorkerType != "cpu" || p.RequestedDevice != "gpu" || p.Fallback != "no GPU worker polling gpu_queue" {
		t.Errorf("published worker_type %q requested %q fallback %q: want a CPU run labelled as fallback", p.WorkerType, p.RequestedDevice, p.Fallback)
	}
}

func TestJobSurvivesCPUWorkerKilledMidJob(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-3", "--heartbeat-timeout", "3s")
	a := e.startWorker(t, "cpu", "cpu-doomed")
	c := e.dial(t)

	// Long enough to be killed in the middle, short enough to rerun: ~5-20 s on one thread.
	req, err := jobclient.Build(jobclient.Spec{JobType: "matrix_multiply", Params: `{"size": 512, "iterations": 600}`, Device: "cpu"}, kernelsRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := jobclient.Submit(ctxTimeout(t, 10*time.Second), c, req); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the job to heartbeat progress on cpu-doomed", 30*time.Second, func() bool {
		desc, err := c.DescribeWorkflowExecution(ctxTimeout(t, 5*time.Second), req.JobID, "")
		if err != nil {
			return false
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && pa.GetLastWorkerIdentity() == "cpu-doomed" && pa.GetHeartbeatDetails() != nil {
				return true
			}
		}
		return false
	})
	e.startWorker(t, "cpu", "cpu-survivor")
	a.signal(9) // SIGKILL: no chance to hand the job back
	<-a.done

	res, err := jobclient.Await(ctxTimeout(t, 3*time.Minute), c, req.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusCompleted || res.WorkerID != "cpu-survivor" || res.Attempt < 2 {
		t.Fatalf("result %+v: want completed by cpu-survivor on attempt ≥ 2", res)
	}
	if pubs := e.resultsOf(t, req.JobID, 10*time.Second); len(pubs) != 1 || pubs[0].WorkerID != "cpu-survivor" {
		t.Errorf("published %+v, want one result from cpu-survivor", pubs)
	}
}

func TestInvalidParamsFailClearlyAndWorkerKeepsServing(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-4")
	e.startWorker(t, "cpu", "cpu-4")
	c := e.dial(t)

	// The starter rejects it locally, with the field and the range.
	_, stderr, code := e.starter(t, "submit", "matrix_multiply", "--size", "-1")
	if code == 0 || !strings.Contains(stderr, "invalid size: -1 is out of range, allowed 1..32768") {
		t.Errorf("starter exit %d, stderr %q", code, stderr)
	}

	// A client that skips local validation: the workflow rejects it without retrying.
	bad := jobs.Request{JobID: jobs.NewJobID(), JobType: "matrix_multiply", Params: json.RawMessage(`{"size": -1}`), Device: "cpu", SubmitTime: time.Now()}
	if err := jobclient.Submit(ctxTimeout(t, 10*time.Second), c, bad); err != nil {
		t.Fatal(err)
	}
	res, err := jobclient.Await(ctxTimeout(t, 30*time.Second), c, bad.JobID)
	if err != nil {
		t.Fatal(err)
	}
	want := "matrix_multiply: invalid size: -1 is out of range, allowed 1..32768"
	if res.Status != jobs.StatusFailed || res.ErrorType != jobs.ErrInvalidParams || res.Error != want {
		t.Errorf("result %+v, want failed %s %q", res, jobs.ErrInvalidParams, want)
	}
	pub := e.resultsOf(t, bad.JobID, 10*time.Second)[0]
	if pub.Status != jobs.StatusFailed || pub.Error != want {
		t.Errorf("published %+v", pub)
	}
	// The same worker goes on serving.
	r := e.submitJSON(t, "matrix_multiply", "--size", "32", "--iterations", "1", "--cpu")
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-4" {
		t.Errorf("next job: %+v", r)
	}
}

func TestDuplicateJobIDIsRejected(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-5")
	e.startWorker(t, "cpu", "cpu-5")
	id := jobs.NewJobID()
	if out, stderr, code := e.starter(t, "submit", "vector_addition", "--size", "10", "--cpu", "--id", id); code != 0 {
		t.Fatalf("first submit: exit %d %s %s", code, out, stderr)
	}
	_, stderr, code := e.starter(t, "submit", "vector_addition", "--size", "10", "--cpu", "--id", id)
	if code == 0 || !strings.Contains(stderr, "job "+id+" exists already") {
		t.Errorf("second submit: exit %d, stderr %q", code, stderr)
	}
}

func TestStarterErrorsAreOneClearLine(t *testing.T) {
	e := env
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "sorting"}, `unknown job type "sorting": known types are command, image_processing, matrix_multiply, neural_network, vector_addition`},
		{[]string{"submit", "matrix_multiply", "--params", "{nope"}, "--params is not a JSON object"},
		{[]string{"submit", "matrix_multiply", "--epochs", "3"}, "invalid epochs: unknown field, known fields are size, iterations, precision, seed"},
		{[]string{"submit", "matrix_multiply", "--device", "tpu"}, `invalid device "tpu": allowed gpu, gpu!, cpu, auto`},
		{[]string{"submit", "matrix_multiply", "--require-gpu", "--device", "cpu"}, "--require-gpu and --device cpu contradict each other"},
		{[]string{"submit", "matrix_multiply", "--temporal-address", "127.0.0.1:1"}, "connect to Temporal at 127.0.0.1:1"},
	} {
		cmd := append([]string{}, tc.args...)
		out, stderr, code := e.starterRaw(t, cmd...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("starter %v: exit %d, stdout %q, stderr %q: want one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}
}

func TestMonitorTailPrintsResults(t *testing.T) {
	e := env
	queue := "e2e_tail_" + testutil.RandomHex(4)
	t.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, queue) })
	args := []string{"--temporal-address", e.address, "--rabbitmq-url", e.rabbitURL, "--result-queue", queue}
	e.startProcess(t, "sched-6", "worker", append([]string{"--role", "scheduler", "--id", "sched-6"}, args...)...)
	e.startWorker(t, "cpu", "cpu-6")
	// serve owns the queue; tail follows serve over HTTP.
	api := "http://" + testutil.FreeAddr(t)
	t.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, queue+"_logs") })
	e.startProcess(t, "monitor", "monitor", "serve", "--addr", strings.TrimPrefix(api, "http://"),
		"--store", filepath.Join(t.TempDir(), "results.jsonl"), "--rabbitmq-url", e.rabbitURL, "--result-queue", queue, "--log-queue", queue+"_logs")
	testutil.WaitFor(t, "monitor serve to answer", 15*time.Second, func() bool {
		resp, err := http.Get(api + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	tail := e.startProcess(t, "tail", "monitor", "tail", "--api", api, "--summary-every", "0")
	r := e.submitJSON(t, "vector_addition", "--size", "1000", "--iterations", "1", "--cpu")
	testutil.WaitFor(t, "monitor tail to print the result and a summary", 15*time.Second, func() bool {
		b, _ := os.ReadFile(tail.log)
		// Another test's job may reach this scheduler too (they share job_queue): count nothing.
		return strings.Contains(string(b), r.JobID) && strings.Contains(string(b), "GB/s") && strings.Contains(string(b), " completed, ")
	})
	// The monitor's API has it too.
	resp, err := http.Get(api + "/api/results?job_type=vector_addition")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Results []jobs.Result `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range page.Results {
		found = found || p.JobID == r.JobID
	}
	if !found {
		t.Errorf("/api/results lacks %s: %d results", r.JobID, len(page.Results))
	}
}

func httpStatus(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWorkerReadiness(t *testing.T) {
	e := env
	addr := testutil.FreeAddr(t)
	e.startWorker(t, "cpu", "cpu-ready", "--health-addr", addr)
	testutil.WaitFor(t, "/readyz to answer 200", 20*time.Second, func() bool {
		code, _ := httpStatus("http://" + addr + "/readyz")
		return code == http.StatusOK
	})
	if code, _ := httpStatus("http://" + addr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
}

func TestWorkerWaitsForTemporal(t *testing.T) {
	e := env
	health := testutil.FreeAddr(t)
	nowhere := testutil.FreeAddr(t) // nothing listens there: the worker must wait, alive but not ready
	p := e.startProcess(t, "cpu-early", "worker", "--role", "cpu", "--id", "cpu-early", "--temporal-address", nowhere, "--health-addr", health)
	testutil.WaitFor(t, "the worker to report it is retrying", 20*time.Second, func() bool {
		b, _ := os.ReadFile(p.log)
		return strings.Contains(string(b), "Temporal not reachable yet, retrying")
	})
	if code, _ := httpStatus("http://" + health + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting: %d, want 200 (alive)", code)
	}
	if code, body := httpStatus("http://" + health + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected") {
		t.Errorf("/readyz while waiting: %d %q, want 503", code, body)
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("worker stopped while waiting: %v, want exit 0", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("worker did not stop on SIGTERM while waiting for Temporal")
	}
}
