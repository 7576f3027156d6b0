package command

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// isRunning reports whether pid is a process that has not exited (a zombie has).
func isRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// The worker directory a process takes is its own while it lives: a second worker on the same
// command directory gets the next one and leaves the first one's running jobs alone; once the
// first gives it up, it is free again.
func TestEachLiveWorkerHasItsOwnDirectory(t *testing.T) {
	base := t.TempDir()
	first, err := ClaimWorkDir(base, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(first.Path, "job-1-x", "work")
	if err := os.MkdirAll(job, 0o755); err != nil {
		t.Fatal(err)
	}
	running := exec.Command("sleep", "60")
	running.Dir = job
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { running.Process.Kill(); running.Wait() })

	second, err := ClaimWorkDir(base, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if first.Path != filepath.Join(base, "w0") || second.Path != filepath.Join(base, "w1") {
		t.Fatalf("directories %s and %s, want w0 and w1 of %s", first.Path, second.Path, base)
	}
	if !isRunning(running.Process.Pid) {
		t.Fatal("a second worker killed a live worker's job")
	}
	if _, err := os.Stat(job); err != nil {
		t.Fatalf("a second worker removed a live worker's job directory: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	running.Process.Kill()
	running.Wait()
	third, err := ClaimWorkDir(base, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if third.Path != first.Path {
		t.Fatalf("after the first worker left, a new one got %s, want %s", third.Path, first.Path)
	}
	if _, err := os.Stat(filepath.Dir(job)); !os.IsNotExist(err) {
		t.Errorf("the job directory a gone worker left is still there (%v)", err)
	}
	second.Close()
}

// The helper process of TestAKilledWorkersBackgroundProcessesDieWhenItsDirectoryIsTaken: a
// worker running one command job, until the test SIGKILLs it.
func TestHelperWorkerToKill(t *testing.T) {
	base := os.Getenv("GPUJOBS_TEST_WORKER_BASE")
	if base == "" {
		t.Skip("the helper of TestAKilledWorkersBackgroundProcessesDieWhenItsDirectoryIsTaken")
	}
	w, err := ClaimWorkDir(base, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(Config{Allow: []string{"sh"}, Dir: w.Path, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Three processes the program leaves behind, each found another way: one in the job's
	// process group and directory, one in a session of its own outside the job's directory (its
	// environment names the job's directories), and one with an empty environment in the job's
	// directory.
	p := sh(`sleep 600 & echo $! >> "$PIDS"
setsid sh -c 'cd /; echo $$ >> "$PIDS"; exec sleep 600' </dev/null >/dev/null 2>&1 &
env -i sleep 600 & echo $! >> "$PIDS"
sleep 600`)
	p.Env = map[string]string{"PIDS": os.Getenv("GPUJOBS_TEST_PIDS")}
	p.Resources.Memory = 1 << 30
	r.Run(jobs.WithRunInfo(context.Background(), jobs.RunInfo{JobID: "job-doomed", Attempt: 1}), p, func(jobs.Progress) {}) //nolint:errcheck // killed before it ends
}

// A worker SIGKILLed in the middle of a command job leaves behind the processes its program put
// in the background: the kernel ends the program (PR_SET_PDEATHSIG) but not them, and without a
// cgroup v2 nothing else does. The next worker to take its directory kills them all, however
// they hid, and removes the job's directory, before it runs a job.
func TestAKilledWorkersBackgroundProcessesDieWhenItsDirectoryIsTaken(t *testing.T) {
	base := t.TempDir()
	pids := filepath.Join(t.TempDir(), "pids")
	worker := exec.Command(os.Args[0], "-test.run=^TestHelperWorkerToKill$", "-test.v")
	worker.Env = append(os.Environ(), "GPUJOBS_TEST_WORKER_BASE="+base, "GPUJOBS_TEST_PIDS="+pids)
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	var left []int
	t.Cleanup(func() {
		worker.Process.Kill()
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testutil.WaitFor(t, "the job's three background processes", 30*time.Second, func() bool {
		b, _ := os.ReadFile(pids)
		left = left[:0]
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				left = append(left, pid)
			}
		}
		return len(left) == 3
	})
	worker.Process.Signal(syscall.SIGKILL)
	worker.Wait()
	time.Sleep(200 * time.Millisecond) // PR_SET_PDEATHSIG's kill of the program lands
	for _, pid := range left {
		if !isRunning(pid) {
			t.Fatalf("background process %d died with its worker: this test no longer shows the leftover it is about", pid)
		}
	}

	w, err := ClaimWorkDir(base, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Path != filepath.Join(base, "w0") {
		t.Fatalf("the next worker took %s, want the dead one's w0", w.Path)
	}
	for _, pid := range left {
		testutil.WaitFor(t, "background process "+strconv.Itoa(pid)+" to be killed", 5*time.Second, func() bool { return !isRunning(pid) })
	}
	if entries, err := os.ReadDir(w.Path); err != nil || len(entries) != 0 {
		t.Errorf("the dead worker's directory still holds %d entries (%v)", len(entries), err)
	}
}

// nobody is the unprivileged user the tests run a second worker as, or give a directory to.
const nobody = 65534

// The helper process of TestWorkersOfTwoUsersOnOneHostEachTakeTheirOwnDefault: a worker that
// takes the default command directory and prints the one it got.
func TestHelperClaimTheDefault(t *testing.T) {
	if os.Getenv("GPUJOBS_TEST_CLAIM_DEFAULT") == "" {
		t.Skip("the helper of TestWorkersOfTwoUsersOnOneHostEachTakeTheirOwnDefault")
	}
	w, err := ClaimWorkDir("", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t.Logf("claimed=%s", w.Path)
}

// A root worker and an unprivileged one on one host, neither given a command directory: each
// takes a directory of its own user's, where they once shared $TMPDIR/gpujobs-jobs and the second
// could not even open the first one's lock files.
func TestWorkersOfTwoUsersOnOneHostEachTakeTheirOwnDefault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the second worker as another user")
	}
	shared := t.TempDir() // the host's /tmp
	for _, d := range []string{filepath.Dir(shared), shared} {
		if err := os.Chmod(d, 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", shared)
	mine, err := ClaimWorkDir("", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	if want := filepath.Join(shared, "gpujobs-jobs-0", "w0"); mine.Path != want {
		t.Fatalf("root's worker took %s, want %s", mine.Path, want)
	}

	bin := filepath.Join(shared, "command.test") // the go tool's build directory is root's alone
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	other := exec.Command(bin, "-test.run=^TestHelperClaimTheDefault$", "-test.v")
	other.Env = append(os.Environ(), "GPUJOBS_TEST_CLAIM_DEFAULT=1", "HOME="+shared)
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := other.CombinedOutput()
	if err != nil {
		t.Fatalf("the unprivileged worker could not take a directory: %v\n%s", err, out)
	}
	if want := "claimed=" + filepath.Join(shared, "gpujobs-jobs-"+strconv.Itoa(nobody), "w0"); !strings.Contains(string(out), want) {
		t.Fatalf("the unprivileged worker's output lacks %q:\n%s", want, out)
	}
}

// A default command directory that another user made first, in the shared temporary directory,
// is refused with an error that says what to do, never used.
func TestADefaultDirectoryOfAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to give the directory to another user")
	}
	shared := t.TempDir()
	t.Setenv("TMPDIR", shared)
	planted := DefaultDir()
	if err := os.Mkdir(planted, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	w, err := ClaimWorkDir("", zaptest.NewLogger(t))
	if err == nil {
		w.Close()
		t.Fatalf("took %s, a directory another user made", w.Path)
	}
	if !strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), "--command-dir") {
		t.Fatalf("error %q does not name the directory and the way out", err)
	}
}
