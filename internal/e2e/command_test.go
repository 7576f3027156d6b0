package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// jobProcesses lists the live processes whose environment names the job.
func jobProcesses(jobID string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(env), "GPUJOBS_JOB_ID="+jobID+"\x00") {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Command jobs as a new user meets them: what the worker allows, what a failure says, the
// memory limit, a cancel that ends every process of the job within 2 s, and the worker serving
// the next job after each.
func TestCommandJobsOnACPUWorker(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-cmd")
	e.startWorker(t, "cpu", "cpu-cmd", "--allow-commands", "sh,python3", "--command-grace", "1s")

	r := e.submitJSON(t, "command", "--", "sh", "-c", `echo "GPUJOBS_PROGRESS 0.5"; echo "hello from $GPUJOBS_JOB_ID"`)
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-cmd" || r.ExitCode == nil || *r.ExitCode != 0 {
		t.Fatalf("a shell command: %+v", r)
	}
	next := func(what string) {
		t.Helper()
		if r := e.submitJSON(t, "command", "--cpu", "--", "sh", "-c", "true"); r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-cmd" {
			t.Errorf("the job after %s: %+v", what, r)
		}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		errType string
		want    string
	}{
		{"not allowed", []string{"--", "perl", "-e", "1"}, jobs.ErrCommandNotAllowed, "perl is not allowed on this worker (it allows sh, python3): add it to --allow-commands"},
		{"missing program", []string{"--", "/opt/none/train", "x"}, jobs.ErrCommandNotAllowed, "/opt/none/train is not allowed on this worker"},
		{"non-zero exit", []string{"--", "sh", "-c", "echo 'RuntimeError: CUDA out of patience' >&2; exit 7"}, jobs.ErrCommandFailed, "exited with status 7; the last lines of its stderr: RuntimeError: CUDA out of patience"},
		{"over its memory", []string{"--memory", "200MiB", "--", "python3", "-c", "x = bytearray(500 << 20)"}, jobs.ErrOutOfMemory, "exceeded its memory limit of 200.0 MiB"},
	} {
		r := e.submitJSON(t, append([]string{"command", "--cpu"}, tc.args...)...)
		if r.Status != jobs.StatusFailed || r.ErrorType != tc.errType || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s: %s %q, want %s saying %q", tc.name, r.ErrorType, r.Error, tc.errType, tc.want)
		}
		next(tc.name)
	}

	// Cancel: every process of the job, a tree of three, ends within 2 s.
	c := e.dial(t)
	out, stderr, code := e.starter(t, "submit", "command", "--cpu", "--json", "--", "sh", "-c", "sleep 300 & sleep 300 & echo up; wait")
	var sub struct {
		JobID string `json:"job_id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("submit: %d %q %q", code, out, stderr)
	}
	testutil.WaitFor(t, "the job's three processes", 30*time.Second, func() bool { return len(jobProcesses(sub.JobID)) >= 3 })
	canceled := time.Now()
	if _, stderr, code := e.starter(t, "cancel", sub.JobID); code != 0 {
		t.Fatal(stderr)
	}
	testutil.WaitFor(t, "every process of the job to end", 10*time.Second, func() bool { return len(jobProcesses(sub.JobID)) == 0 })
	gone := time.Since(canceled)
	res, err := jobclient.Await(ctxTimeout(t, 30*time.Second), c, sub.JobID)
	t.Logf("cancel: the job's processes ended %s after the cancel; result %s", gone.Round(time.Millisecond), res.Status)
	if err != nil || res.Status != jobs.StatusCanceled || gone > 2*time.Second {
		t.Errorf("cancel: processes gone after %s, result %+v, %v", gone, res, err)
	}
	next("the cancel")
}

// A worker started without --allow-commands refuses command jobs, and says how to allow them.
func TestCommandJobsNeedAllowCommands(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-cmd2")
	e.startWorker(t, "cpu", "cpu-cmd2")
	r := e.submitJSON(t, "command", "--", "sh", "-c", "true")
	if r.Status != jobs.StatusFailed || r.ErrorType != jobs.ErrCommandNotAllowed || !strings.Contains(r.Error, "start it with --allow-commands sh") {
		t.Errorf("%+v", r)
	}
}

// Two GPU command jobs on a worker with two GPUs get a GPU each (here a worker of command jobs
// only, on a fake device list: no GPU is needed to check the book-keeping), and a third waits.
func TestGPUCommandJobsGetDevicesOfTheirOwn(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	// A dev server of its own: the GPU worker it polls with must not outlive the test in the
	// shared server's poller list, where other tests would take it for a GPU worker.
	e := env.isolated(t, env.rabbitURL)
	e.startWorker(t, "scheduler", "sched-cmd3")
	e.startWorker(t, "gpu", "gpu-cmd3", "--gpu-devices", "0,1", "--allow-commands", "sh")
	var (
		mu      sync.Mutex
		results []jobs.Result
		wg      sync.WaitGroup
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.submitJSON(t, "command", "--gpus", "1", "--device", "gpu!", "--", "sh", "-c", `echo "devices=$CUDA_VISIBLE_DEVICES"; sleep 2`)
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	devices := map[string]int{}
	for _, r := range results {
		if r.Status != jobs.StatusCompleted || r.WorkerType != jobs.WorkerTypeGPU || len(r.GPUs) != 1 {
			t.Fatalf("%+v", r)
		}
		devices[fmt.Sprint(r.GPUs)]++
	}
	// Overlapping jobs never share a device.
	for i, a := range results {
		for _, b := range results[i+1:] {
			if a.StartTime.Before(b.EndTime) && b.StartTime.Before(a.EndTime) && fmt.Sprint(a.GPUs) == fmt.Sprint(b.GPUs) {
				t.Errorf("%s and %s ran at once on GPU %v", a.JobID, b.JobID, a.GPUs)
			}
		}
	}
	t.Logf("devices given: %v", devices)
	if devices["[0]"] == 0 || devices["[1]"] == 0 {
		t.Errorf("devices %v: want both GPUs used", devices)
	}
}
