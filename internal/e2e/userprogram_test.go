package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// seenLine is a line starter logs --follow printed, and when.
type seenLine struct {
	text string
	at   time.Time
}

// follow runs `starter logs JOB --follow` and collects its stdout lines as they come.
func (e *environment) follow(t *testing.T, api, jobID string) (lines func() []seenLine, wait func() (int, string)) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "starter"), "logs", jobID, "--follow", "--monitor", api, "--temporal-address", e.address)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []seenLine
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			seen = append(seen, seenLine{sc.Text(), time.Now()})
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill() }) //nolint:errcheck // gone already when it exited
	return func() []seenLine {
			mu.Lock()
			defer mu.Unlock()
			return append([]seenLine(nil), seen...)
		}, func() (int, string) {
			<-read
			cmd.Wait() //nolint:errcheck // the exit code says
			return cmd.ProcessState.ExitCode(), stderr.String()
		}
}

// The Python example as a new user runs it: submitted with bin/starter, its lines shown by
// `starter logs --follow` while it runs (the first epoch's line long before the job ends), its
// output listed in the result and downloaded with the sha256 the result states.
func TestThePythonExampleRunsAsAUserWouldRunIt(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	e := env.isolated(t, env.rabbitURL)
	api := e.startMonitor(t)
	e.startWorker(t, "scheduler", "sched-py")
	e.startWorker(t, "cpu", "cpu-py", "--allow-commands", "python3")
	c := e.dial(t)

	train := filepath.Join(repoRoot(t), "examples", "commands", "train.py")
	job := e.submitted(t, "command", "--output", "model.json", "--", "python3", train, "--epochs", "6", "--samples", "200", "--epoch-seconds", "0.5")
	lines, wait := e.follow(t, api, job)
	code, stderr := wait()
	r, err := jobclient.Await(ctxTimeout(t, time.Minute), c, job)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || r.Status != jobs.StatusCompleted {
		t.Fatalf("starter logs --follow exit %d (%s), job %s %s", code, stderr, r.Status, r.Error)
	}
	seen := lines()
	var first, last seenLine
	for _, l := range seen {
		if strings.HasPrefix(l.text, "epoch 1/6 ") {
			first = l
		}
		if strings.HasPrefix(l.text, "done: ") {
			last = l
		}
	}
	if first.text == "" || last.text == "" || seen[0].text != "starting from scratch" {
		t.Fatalf("followed lines %v: want the script's, from its first", seen)
	}
	if !first.at.Before(r.EndTime.Add(-time.Second)) { // 5 more epochs of 0.5 s came after it
		t.Errorf("the first epoch's line was shown at %s, the job ended at %s: not live", first.at.Format(time.StampMilli), r.EndTime.Format(time.StampMilli))
	}
	if len(r.Artifacts) != 1 || r.Artifacts[0].Name != "model.json" {
		t.Fatalf("artifacts %+v, want model.json", r.Artifacts)
	}
	dst := t.TempDir()
	out, stderr2, code := e.starter(t, "download", job, "-o", dst)
	if code != 0 || !strings.Contains(out, r.Artifacts[0].SHA256+" ok") {
		t.Fatalf("starter download: exit %d: %s%s", code, out, stderr2)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "model.json")); err != nil || shaHex(b) != r.Artifacts[0].SHA256 || !strings.Contains(string(b), `"accuracy"`) {
		t.Errorf("model.json: %v, sha256 %s, want %s", err, shaHex(b), r.Artifacts[0].SHA256)
	}
}

// A job that prints a gigabyte: its log is cut at the bound with a notice, the job itself is not
// harmed, and the next job on the same worker runs and logs as usual.
func TestAJobPrintingAGigabyteIsCut(t *testing.T) {
	t.Parallel() // its own dev server and queues: it runs beside the other such tests
	e := env.isolated(t, env.rabbitURL)
	api := e.startMonitor(t)
	e.startWorker(t, "scheduler", "sched-gb")
	e.startWorker(t, "cpu", "cpu-gb", "--allow-commands", "python3,sh")

	r := e.submitJSON(t, "command", "--", "python3", "-c",
		"import sys\nblock = ('x' * 1023 + '\\n') * 1024\nfor _ in range(1024): sys.stdout.write(block)\nprint('the end')")
	if r.Status != jobs.StatusCompleted || r.WorkerID != "cpu-gb" {
		t.Fatalf("the printing job: %s %s", r.Status, r.Error)
	}
	stdout, stderr, code := e.starterRaw(t, "logs", r.JobID, "--monitor", api)
	if code != 0 || !strings.Contains(stderr, "[gpujobs] log cut at 64 MiB") || len(stdout) > 70<<20 || len(stdout) < 60<<20 {
		t.Errorf("starter logs: exit %d, %d bytes of stdout, stderr %q: want 64 MiB and the cut notice", code, len(stdout), stderr)
	}
	next := e.submitJSON(t, "command", "--", "sh", "-c", "echo still here")
	if next.Status != jobs.StatusCompleted || next.WorkerID != "cpu-gb" {
		t.Fatalf("the next job: %s %s", next.Status, next.Error)
	}
	if out, _, code := e.starterRaw(t, "logs", next.JobID, "--monitor", api); code != 0 || out != "still here\n" {
		t.Errorf("the next job's log: exit %d, %q", code, out)
	}
}
