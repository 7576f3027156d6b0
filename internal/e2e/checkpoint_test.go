package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// repoRoot is the checkout, for the examples.
func repoRoot(t testing.TB) string {
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// submitted starts a job with bin/starter (no --wait) and returns its ID.
func (e *environment) submitted(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := e.starter(t, append([]string{"submit", "--json"}, args...)...)
	var sub struct {
		JobID string `json:"job_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || sub.JobID == "" {
		t.Fatalf("starter submit %v: exit %d, %q %q", args, code, out, stderr)
	}
	return sub.JobID
}

// killMidJob waits until jobID's kernel on doomed has reported at least fraction of its work and
// a checkpoint was saved after that (settle), starts a second CPU worker, and SIGKILLs doomed.
func (e *environment) killMidJob(t *testing.T, c client.Client, jobID string, doomed *process, fraction float64, settle time.Duration, survivor ...string) {
	t.Helper()
	testutil.WaitFor(t, "the job to pass "+jobID+"'s checkpoint", 90*time.Second, func() bool {
		st, err := jobclient.GetStatus(ctxTimeout(t, 5*time.Second), c, jobID)
		if err != nil || st.Activity == nil || st.Activity.Progress == nil || st.Activity.Progress.Total == 0 {
			return false
		}
		p := st.Activity.Progress
		return float64(p.Iteration)/float64(p.Total) >= fraction
	})
	time.Sleep(settle)
	e.startWorker(t, "cpu", survivor[0], survivor[1:]...)
	doomed.signal(9) // SIGKILL: no chance to hand the job back or save once more
	<-doomed.done
}

// A training script's worker is SIGKILLed in the middle: Temporal retries the job on a second
// worker, which restores the checkpoint the first one saved, and the script resumes from its
// epoch instead of starting over. The job completes once, counted once by the monitor, and its
// output downloads with the sha256 its result states.
func TestACommandJobResumesOnAnotherWorker(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	e := env.isolated(t, env.rabbitURL)
	api := e.startMonitor(t)
	e.startWorker(t, "scheduler", "sched-ck", "--heartbeat-timeout", "3s")
	flags := []string{"--allow-commands", "python3", "--checkpoint-every", "300ms", "--command-grace", "1s"}
	doomed := e.startWorker(t, "cpu", "cpu-ck-doomed", flags...)
	c := e.dial(t)

	train := filepath.Join(repoRoot(t), "examples", "commands", "train.py")
	job := e.submitted(t, "command", "--cpu", "--output", "model.json", "--",
		"python3", train, "--epochs", "10", "--samples", "200", "--epoch-seconds", "0.7")
	e.killMidJob(t, c, job, doomed, 0.3, time.Second, append([]string{"cpu-ck-survivor"}, flags...)...)

	r, err := jobclient.Await(ctxTimeout(t, 3*time.Minute), c, job)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-ck-survivor" || r.Attempt < 2 {
		t.Fatalf("result %s by %s on attempt %d (%s): want completed by the survivor on attempt ≥ 2", r.Status, r.WorkerID, r.Attempt, r.Error)
	}
	if !strings.Contains(r.ResumedFrom, "saved by an earlier attempt") {
		t.Errorf("resumed from %q, want the first attempt's checkpoint", r.ResumedFrom)
	}
	if len(r.Artifacts) != 1 || r.Artifacts[0].Name != "model.json" {
		t.Fatalf("artifacts %+v, want model.json", r.Artifacts)
	}
	dst := t.TempDir()
	if _, stderr, code := e.starter(t, "download", job, "-o", dst); code != 0 {
		t.Fatalf("starter download: exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "model.json")); err != nil || shaHex(b) != r.Artifacts[0].SHA256 {
		t.Errorf("downloaded model.json: %v, sha256 %s, the result says %s", err, shaHex(b), r.Artifacts[0].SHA256)
	}
	// Its log shows both attempts: the first from scratch, the second from the checkpoint.
	stdout, stderr, code := e.starterRaw(t, "logs", job, "--monitor", api)
	if code != 0 || !strings.Contains(stdout, "starting from scratch") || !strings.Contains(stdout, "resuming from the checkpoint of epoch ") {
		t.Errorf("starter logs: exit %d\n%s%s", code, stdout, stderr)
	}
	e.assertCountedOnce(t, api)
}

// A worker SIGKILLed while its command job has a process in the background: the program dies
// with the worker, what it put in the background does not. The worker restarted on the same
// --command-dir kills it before it takes a job, then runs the job's retry.
func TestARestartedWorkerEndsWhatItsKilledJobLeftRunning(t *testing.T) {
	t.Parallel()
	e := env.isolated(t, env.rabbitURL)
	e.startWorker(t, "scheduler", "sched-bg", "--heartbeat-timeout", "3s")
	flags := []string{"--allow-commands", "sh", "--command-dir", t.TempDir()}
	doomed := e.startWorker(t, "cpu", "cpu-bg-doomed", flags...)
	c := e.dial(t)

	job := e.submitted(t, "command", "--cpu", "--", "sh", "-c",
		`if [ "$GPUJOBS_ATTEMPT" = 1 ]; then setsid sleep 600 </dev/null >/dev/null 2>&1 & sleep 600; fi; echo "attempt $GPUJOBS_ATTEMPT done"`)
	testutil.WaitFor(t, "the job's program and its two sleeps", 30*time.Second, func() bool { return len(jobProcesses(job)) == 3 })
	doomed.signal(9)
	<-doomed.done
	var left []int
	testutil.WaitFor(t, "the program to die with its worker", 10*time.Second, func() bool {
		left = jobProcesses(job)
		return len(left) == 2 // the sleeps outlive it
	})
	t.Cleanup(func() {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	e.startWorker(t, "cpu", "cpu-bg-restarted", flags...)
	testutil.WaitFor(t, "the restarted worker to kill the sleeps", 30*time.Second, func() bool {
		now := jobProcesses(job)
		for _, pid := range left {
			if slices.Contains(now, pid) {
				return false
			}
		}
		return true
	})
	r, err := jobclient.Await(ctxTimeout(t, 2*time.Minute), c, job)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-bg-restarted" || r.Attempt != 2 {
		t.Fatalf("result %s by %s on attempt %d (%s): want completed by the restarted worker on attempt 2", r.Status, r.WorkerID, r.Attempt, r.Error)
	}
}

// The built-in neural_network keeps its weights and Adam state per epoch through the same
// checkpoints: SIGKILL its worker and the retry resumes from the last completed epoch, saying so.
func TestNeuralNetworkResumesOnAnotherWorker(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	e := env.isolated(t, env.rabbitURL)
	api := e.startMonitor(t)
	e.startWorker(t, "scheduler", "sched-nn", "--heartbeat-timeout", "3s")
	doomed := e.startWorker(t, "cpu", "cpu-nn-doomed")
	c := e.dial(t)

	job := e.submitted(t, "neural_network", "--device", "cpu", "--epochs", "12", "--batch-size", "64",
		"--params", `{"samples": 16384, "hidden_size": 256}`)
	e.killMidJob(t, c, job, doomed, 0.3, 500*time.Millisecond, "cpu-nn-survivor")

	r, err := jobclient.Await(ctxTimeout(t, 5*time.Minute), c, job)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-nn-survivor" || r.Attempt < 2 {
		t.Fatalf("result %s by %s on attempt %d (%s): want completed by the survivor on attempt ≥ 2", r.Status, r.WorkerID, r.Attempt, r.Error)
	}
	if !strings.HasPrefix(r.ResumedFrom, "epoch ") || !strings.HasSuffix(r.ResumedFrom, " of 12 (its checkpoint)") {
		t.Errorf("resumed from %q, want the epoch of the first attempt's checkpoint", r.ResumedFrom)
	}
	e.assertCountedOnce(t, api)
}

// assertCountedOnce waits for the monitor to count one completed job and checks that it stays one.
func (e *environment) assertCountedOnce(t *testing.T, api string) {
	t.Helper()
	testutil.WaitFor(t, "the monitor to count the job", 30*time.Second, func() bool { return totals(t, api).Completed >= 1 })
	time.Sleep(2 * time.Second) // a duplicate would arrive by now
	if tot := totals(t, api); tot.Completed != 1 || tot.Failed != 0 {
		t.Errorf("the monitor counts %+v, want the job once", tot)
	}
}
