package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// dirStore is a Store over a local directory, for the runner's tests (the worker's is the
// artifact store).
type dirStore struct{ root string }

func (s dirStore) SaveDir(_ context.Context, prefix, dir string, patterns []string) ([]jobs.Artifact, error) {
	var out []jobs.Artifact
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !matchAny(patterns, rel) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(s.root, prefix, rel)
		os.MkdirAll(filepath.Dir(dst), 0o755) //nolint:errcheck
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out = append(out, jobs.Artifact{Name: rel, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
		return nil
	})
	return out, err
}

func matchAny(patterns []string, rel string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, rel); ok || p == "**" {
			return true
		}
	}
	return false
}

func (s dirStore) LoadDir(_ context.Context, prefix, dir, pattern string) ([]jobs.Artifact, error) {
	src := filepath.Join(s.root, prefix)
	var out []jobs.Artifact
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if pattern != "" && !matchAny([]string{pattern}, rel) {
			return nil
		}
		b, _ := os.ReadFile(p)
		os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755) //nolint:errcheck
		out = append(out, jobs.Artifact{Name: rel, Size: int64(len(b))})
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	return out, err
}

func (s dirStore) Delete(_ context.Context, prefix string) error {
	return os.RemoveAll(filepath.Join(s.root, prefix))
}

// memLog keeps the lines a job printed.
type memLog struct {
	mu    sync.Mutex
	lines []string
}

func (m *memLog) Write(stream, text string) {
	m.mu.Lock()
	m.lines = append(m.lines, stream+": "+text)
	m.mu.Unlock()
}
func (m *memLog) Close(context.Context) error { return nil }
func (m *memLog) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.lines, "\n")
}

type fixture struct {
	r     *Runner
	store dirStore
	log   *memLog
}

func newFixture(t *testing.T, c Config) *fixture {
	t.Helper()
	f := &fixture{store: dirStore{root: t.TempDir()}, log: &memLog{}}
	if c.Allow == nil {
		c.Allow = []string{"sh", "python3"}
	}
	c.Dir, c.Store, c.Logger = t.TempDir(), f.store, zaptest.NewLogger(t)
	c.Logs = func(string, int) LogWriter { return f.log }
	r, err := NewRunner(c)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	return f
}

func (f *fixture) run(ctx context.Context, jobID string, attempt int, p *builtin.Command, report jobs.Reporter) (jobs.Output, error) {
	if p.Resources.Memory == 0 {
		p.Resources.Memory = 1 << 30
	}
	if report == nil {
		report = func(jobs.Progress) {}
	}
	return f.r.Run(jobs.WithRunInfo(ctx, jobs.RunInfo{JobID: jobID, Attempt: attempt}), p, report)
}

func sh(script string) *builtin.Command { return &builtin.Command{Argv: []string{"sh", "-c", script}} }

func failure(t *testing.T, err error) *jobs.Failure {
	t.Helper()
	var f *jobs.Failure
	if !errors.As(err, &f) {
		t.Fatalf("err %v is not a job failure", err)
	}
	return f
}

func TestOnlyAllowedProgramsRun(t *testing.T) {
	none := newFixture(t, Config{Allow: []string{}})
	_, err := none.run(context.Background(), "job-a", 1, sh("true"), nil)
	if f := failure(t, err); f.Type != jobs.ErrCommandNotAllowed || f.Retryable || !strings.Contains(f.Message, "start it with --allow-commands sh") {
		t.Errorf("a worker without --allow-commands: %s %q", f.Type, f.Message)
	}
	fx := newFixture(t, Config{Allow: []string{"sh"}})
	for _, argv := range [][]string{{"python3", "-c", "1"}, {"/bin/sh", "-c", "true"}, {"./sh"}} {
		_, err := fx.run(context.Background(), "job-b", 1, &builtin.Command{Argv: argv}, nil)
		if f := failure(t, err); f.Type != jobs.ErrCommandNotAllowed || !strings.Contains(f.Message, "not allowed on this worker (it allows sh)") {
			t.Errorf("%v: %s %q", argv, f.Type, f.Message)
		}
	}
	missing := newFixture(t, Config{Allow: []string{"no-such-program-x"}})
	_, err = missing.run(context.Background(), "job-c", 1, &builtin.Command{Argv: []string{"no-such-program-x"}}, nil)
	if f := failure(t, err); f.Type != jobs.ErrCommandFailed || !strings.Contains(f.Message, "no such program") {
		t.Errorf("a missing executable: %s %q", f.Type, f.Message)
	}
}

func TestTheProgramSeesItsJob(t *testing.T) {
	fx := newFixture(t, Config{GPUs: NewDevices([]Device{{Index: 0}, {Index: 1}, {Index: 2}})})
	p := sh(`echo "id=$GPUJOBS_JOB_ID attempt=$GPUJOBS_ATTEMPT gpus=$CUDA_VISIBLE_DEVICES omp=$OMP_NUM_THREADS x=$X"
for d in "$GPUJOBS_INPUT_DIR" "$GPUJOBS_OUTPUT_DIR" "$GPUJOBS_CHECKPOINT_DIR"; do test -d "$d" || exit 9; done
test "$(pwd)" != "$GPUJOBS_OUTPUT_DIR" && echo secret=$AWS_SECRET_ACCESS_KEY`)
	p.Env = map[string]string{"X": "42"}
	p.Resources = builtin.Resources{GPUs: 2, CPUs: 3}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "worker-only")
	out, err := fx.run(context.Background(), "job-env", 1, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fx.log.text(); !strings.Contains(got, "stdout: id=job-env attempt=1 gpus=0,1 omp=3 x=42") || !strings.Contains(got, "secret=\n") && !strings.HasSuffix(got, "secret=") {
		t.Errorf("the program printed:\n%s", got)
	}
	if *out.ExitCode != 0 || fmt.Sprint(out.GPUs) != "[0 1]" {
		t.Errorf("exit %d, GPUs %v", *out.ExitCode, out.GPUs)
	}
}

func TestAFailingProgramSaysHowAndWorkerGoesOn(t *testing.T) {
	fx := newFixture(t, Config{})
	_, err := fx.run(context.Background(), "job-f", 1, sh(`echo starting; echo "ValueError: bad learning rate" >&2; exit 3`), nil)
	if f := failure(t, err); f.Type != jobs.ErrCommandFailed || f.Retryable || !strings.Contains(f.Message, "exited with status 3") ||
		!strings.Contains(f.Message, "ValueError: bad learning rate") {
		t.Errorf("%s %q", f.Type, f.Message)
	}
	if _, err := fx.run(context.Background(), "job-g", 1, sh("true"), nil); err != nil {
		t.Errorf("the next job: %v", err)
	}
}

func TestMemoryLimitIsEnforced(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	fx := newFixture(t, Config{})
	p := &builtin.Command{Argv: []string{"python3", "-c", "x = bytearray(600 * 1024 * 1024); print(len(x))"},
		Resources: builtin.Resources{Memory: 256 << 20}}
	_, err := fx.run(context.Background(), "job-m", 1, p, nil)
	if f := failure(t, err); f.Type != jobs.ErrOutOfMemory || !strings.Contains(f.Message, "exceeded its memory limit of 256.0 MiB") {
		t.Errorf("%s %q", f.Type, f.Message)
	}
	p.Argv[2] = "x = bytearray(64 * 1024 * 1024); print(len(x))"
	if _, err := fx.run(context.Background(), "job-m2", 1, p, nil); err != nil {
		t.Errorf("within its limit: %v", err)
	}
}

func TestProgressLinesDriveTheProgress(t *testing.T) {
	fx := newFixture(t, Config{})
	var got []jobs.Progress
	_, err := fx.run(context.Background(), "job-p", 1, sh(`echo "GPUJOBS_PROGRESS 0.25 loss=1.5"; echo "GPUJOBS_PROGRESS 1"; echo "GPUJOBS_PROGRESS 7"`),
		func(p jobs.Progress) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Iteration != 250 || got[0].Total != 1000 || *got[0].Loss != 1.5 || got[1].Iteration != 1000 {
		t.Errorf("progress %+v", got)
	}
}

// alive lists the processes whose environment names the job.
func alive(t *testing.T, jobID string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && strings.Contains(string(env), "GPUJOBS_JOB_ID="+jobID+"\x00") {
			if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func TestCancelEndsEveryProcessOfTheJob(t *testing.T) {
	fx := newFixture(t, Config{Grace: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// A tree: two background sleeps, one of which ignores SIGTERM, and the shell waiting.
		_, err := fx.run(ctx, "job-tree", 1, sh(`sleep 300 & (trap '' TERM; sleep 300) & echo up; wait`), nil)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(alive(t, "job-tree")) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(alive(t, "job-tree")); n < 3 {
		t.Fatalf("%d processes of the job running, want its 3", n)
	}
	canceled := time.Now()
	cancel()
	err := <-done
	took := time.Since(canceled)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want canceled", err)
	}
	if left := alive(t, "job-tree"); len(left) != 0 {
		t.Errorf("processes left after the cancel: %v", left)
	}
	t.Logf("every process of the job ended %s after the cancel (grace %s)", took.Round(time.Millisecond), fx.r.c.Grace)
	if took > 2*time.Second {
		t.Errorf("the job's processes took %s to end", took)
	}
}

func TestBackgroundProcessesDoNotOutliveTheJob(t *testing.T) {
	fx := newFixture(t, Config{})
	if _, err := fx.run(context.Background(), "job-bg", 1, sh(`sleep 300 >/dev/null 2>&1 & echo left`), nil); err != nil {
		t.Fatal(err)
	}
	if left := alive(t, "job-bg"); len(left) != 0 {
		t.Errorf("a background process outlived its job: %v", left)
	}
}

func TestTimeoutStopsTheProgram(t *testing.T) {
	fx := newFixture(t, Config{Grace: 200 * time.Millisecond})
	p := sh("sleep 300")
	p.Timeout = jobs.Duration(300 * time.Millisecond)
	_, err := fx.run(context.Background(), "job-t", 1, p, nil)
	if f := failure(t, err); f.Type != jobs.ErrCommandFailed || !strings.Contains(f.Message, "ran past its timeout of 300ms") {
		t.Errorf("%s %q", f.Type, f.Message)
	}
}

func TestOutputsBecomeArtifactsAndInputsAreStaged(t *testing.T) {
	fx := newFixture(t, Config{})
	p := sh(`mkdir -p "$GPUJOBS_OUTPUT_DIR/sub"; printf model >"$GPUJOBS_OUTPUT_DIR/model.bin"; printf x >"$GPUJOBS_OUTPUT_DIR/sub/notes.txt"; printf y >"$GPUJOBS_OUTPUT_DIR/skip.tmp"`)
	p.Outputs = []string{"*.bin", "sub/*.txt"}
	out, err := fx.run(context.Background(), "job-o", 1, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, a := range out.Artifacts {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	sum := sha256.Sum256([]byte("model"))
	if strings.Join(names, ",") != "model.bin,sub/notes.txt" || out.Artifacts[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("artifacts %+v", out.Artifacts)
	}
	q := sh(`cat "$GPUJOBS_INPUT_DIR/job-o/model.bin"`)
	q.Inputs = []builtin.Input{{Job: "job-o", Name: "*.bin"}}
	if _, err := fx.run(context.Background(), "job-i", 1, q, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fx.log.text(), "stdout: model") {
		t.Errorf("the second job did not see the first one's output:\n%s", fx.log.text())
	}
	q.Inputs = []builtin.Input{{Job: "job-none"}}
	_, err = fx.run(context.Background(), "job-i2", 1, q, nil)
	if f := failure(t, err); f.Type != jobs.ErrInvalidParams || !strings.Contains(f.Message, "input job-none: that job has no such artifact") {
		t.Errorf("a missing input: %s %q", f.Type, f.Message)
	}
}

// What an attempt saved in its checkpoint directory is there when the next attempt starts.
func TestACheckpointSurvivesTheAttempt(t *testing.T) {
	fx := newFixture(t, Config{CheckpointEvery: 50 * time.Millisecond})
	script := `f="$GPUJOBS_CHECKPOINT_DIR/epoch"; e=$(cat "$f" 2>/dev/null || echo 0); echo "resumed=$GPUJOBS_RESUMED from epoch $e"
while [ "$e" -lt 6 ]; do e=$((e+1)); echo $e >"$f"; echo "epoch $e"; [ "$e" = 3 ] && [ "$GPUJOBS_ATTEMPT" = 1 ] && sleep 300; sleep 0.1; done`
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !strings.Contains(fx.log.text(), "epoch 3") {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // a periodic save happens
		cancel()                           // the worker goes away (a SIGKILLed worker is the e2e test's)
	}()
	if _, err := fx.run(ctx, "job-ck", 1, sh(script), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("first attempt: %v", err)
	}
	out, err := fx.run(context.Background(), "job-ck", 2, sh(script), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fx.log.text(), "resumed=1 from epoch 3") || !strings.Contains(out.ResumedFrom, "1 file(s)") {
		t.Errorf("resumed %q, log:\n%s", out.ResumedFrom, fx.log.text())
	}
	if _, err := os.Stat(filepath.Join(fx.store.root, checkpointPrefix("job-ck"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the checkpoint of a completed job is kept: %v", err)
	}
}

func TestTwoGPUJobsGetDifferentDevices(t *testing.T) {
	devs := NewDevices([]Device{{Index: 0}, {Index: 1}})
	fx := newFixture(t, Config{GPUs: devs})
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := sh(`echo $CUDA_VISIBLE_DEVICES; sleep 0.5`)
			p.Resources.GPUs = 1
			out, err := fx.run(context.Background(), fmt.Sprintf("job-gpu%d", i), 1, p, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[fmt.Sprint(out.GPUs)] = true
			mu.Unlock()
		}()
	}
	// While both run, a third finds none free: busy, to wait and be offered again.
	time.Sleep(200 * time.Millisecond)
	p := sh("true")
	p.Resources.GPUs = 1
	_, err := fx.run(context.Background(), "job-gpu3", 1, p, nil)
	wg.Wait()
	if len(seen) != 2 || !seen["[0]"] || !seen["[1]"] {
		t.Errorf("devices given %v, want [0] and [1]", seen)
	}
	if !errors.Is(err, jobs.ErrBusy) {
		t.Errorf("a third GPU job while both devices are taken: %v, want busy", err)
	}
	p.Resources.GPUs = 3
	if _, err := fx.run(context.Background(), "job-gpu4", 1, p, nil); !errors.Is(err, jobs.ErrTooBig) {
		t.Errorf("3 GPUs of a 2-GPU worker: %v, want too big", err)
	}
}

// A program that prints a gigabyte streams it through; the runner keeps no more than the tail.
func TestAGigabyteOfOutputStreamsThrough(t *testing.T) {
	fx := newFixture(t, Config{})
	fx.r.c.Logs = nil // count the lines instead of keeping them
	n := 0
	fx.r.c.Logs = func(string, int) LogWriter { return countLog{&n} }
	if _, err := fx.run(context.Background(), "job-big", 1, sh(`head -c 1073741824 /dev/zero | tr '\0' 'x' | fold -w 1000`), nil); err != nil {
		t.Fatal(err)
	}
	if n < 1_000_000 {
		t.Errorf("%d lines passed through, want 1,073,742", n)
	}
}

type countLog struct{ n *int }

func (c countLog) Write(string, string)        { *c.n++ }
func (c countLog) Close(context.Context) error { return nil }
