package command

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// maxWorkDirs bounds the workers that share one command directory on a host.
const maxWorkDirs = 64

// WorkDir is one worker's own directory under the command directory, base/w<N>, held for the
// worker's life with an exclusive flock on base/w<N>.lock. The kernel drops the lock when the
// worker dies, however it dies, so whatever a worker finds in a directory it has just taken was
// left by one that died: its jobs' directories, and the processes its jobs left behind. A
// SIGKILLed worker's direct children die with it (PR_SET_PDEATHSIG), but a program's
// backgrounded processes do not, and without a cgroup v2 nothing else ends them. ClaimWorkDir
// kills them and removes the directories before the worker takes a job, so a restarted worker
// frees the GPUs, memory and disk its dead predecessor's jobs still held.
type WorkDir struct {
	Path string
	lock *os.File
}

// Leftovers is what ClaimWorkDir cleared from a dead worker's directory.
type Leftovers struct {
	Processes   int // killed
	Directories int // removed
}

// ClaimWorkDir takes the first free worker directory under base (made if missing) and clears
// what a dead worker left in it.
func ClaimWorkDir(base string, logger *zap.Logger) (*WorkDir, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	base, err := makeCommandDir(base)
	if err != nil {
		return nil, err
	}
	for n := range maxWorkDirs {
		path := filepath.Join(base, "w"+strconv.Itoa(n))
		f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("command jobs' directory %s: this worker's user (uid %d) cannot write it; give the worker its own --command-dir (GPUJOBS_COMMAND_DIR): %w", base, os.Geteuid(), err)
		}
		if err != nil {
			return nil, fmt.Errorf("command jobs' directory: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // a live worker's
			}
			return nil, fmt.Errorf("lock %s.lock: %w", path, err)
		}
		f.Truncate(0)                                   //nolint:errcheck // the pid is for people reading the directory
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0) //nolint:errcheck
		w := &WorkDir{Path: path, lock: f}
		left, err := w.clear()
		if err != nil {
			w.Close()
			return nil, err
		}
		if left != (Leftovers{}) {
			logger.Warn("a worker that died left jobs behind here: killed their processes and removed their directories",
				zap.String("dir", path), zap.Int("processes", left.Processes), zap.Int("directories", left.Directories))
		}
		return w, nil
	}
	return nil, fmt.Errorf("command jobs' directory %s: %d workers use it already; give this one its own --command-dir", base, maxWorkDirs)
}

// makeCommandDir makes the command directory dir, or this user's own default when dir is empty,
// and returns it.
func makeCommandDir(dir string) (string, error) {
	if dir == "" {
		return ownDefaultDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("command jobs' directory: %w", err)
	}
	return dir, nil
}

// DefaultDir is the command directory of a worker not given one: $TMPDIR/gpujobs-jobs-<uid>, one
// per user, so workers run by different users on one host (a root worker and an unprivileged
// one, say) never share, and never trip over, each other's directories.
func DefaultDir() string {
	return filepath.Join(os.TempDir(), "gpujobs-jobs-"+strconv.Itoa(os.Geteuid()))
}

// ownDefaultDir makes DefaultDir, private to this user, and returns it; it refuses one that
// another user made in its place in the shared temporary directory.
func ownDefaultDir() (string, error) {
	base := DefaultDir()
	if err := os.Mkdir(base, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("command jobs' directory: %w", err)
	}
	fi, err := os.Lstat(base)
	if err != nil {
		return "", fmt.Errorf("command jobs' directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("command jobs' directory %s is not a directory of this worker's user (uid %d); remove it or give the worker its own --command-dir (GPUJOBS_COMMAND_DIR)", base, os.Geteuid())
	}
	return base, nil
}

// Close gives the directory up for another worker.
func (w *WorkDir) Close() error {
	return w.lock.Close()
}

// clear kills the processes of w's directory and removes what it holds.
func (w *WorkDir) clear() (Leftovers, error) {
	if err := os.MkdirAll(w.Path, 0o755); err != nil {
		return Leftovers{}, fmt.Errorf("command jobs' directory: %w", err)
	}
	var left Leftovers
	entries, err := os.ReadDir(w.Path)
	if err != nil {
		return left, err
	}
	if len(entries) == 0 {
		return left, nil // nothing was running here
	}
	left.Processes = killUnder(w.Path)
	for _, e := range entries {
		p := filepath.Join(w.Path, e.Name())
		if cg, err := os.ReadFile(filepath.Join(p, cgroupFile)); err == nil {
			killCgroup(strings.TrimSpace(string(cg)))
		}
		if err := os.RemoveAll(p); err != nil {
			return left, fmt.Errorf("remove a dead worker's job directory: %w", err)
		}
		left.Directories++
	}
	return left, nil
}

// cgroupFile, in a job's directory, names the job's cgroup v2 when it has one, for the worker
// that clears the directory after this one died.
const cgroupFile = ".cgroup"

// killCgroup ends every process of a dead worker's job cgroup and removes it.
func killCgroup(dir string) {
	if dir == "" || !strings.HasPrefix(dir, "/sys/fs/cgroup/") {
		return
	}
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644) //nolint:errcheck // kernels before 5.14 lack it
	for range 100 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond) // its processes are exiting
	}
}

// killUnder SIGKILLs, until none is left, every process of this user whose working directory or
// environment lies under dir: a job's processes run in its work directory with its directories
// in their environment (HOME, TMPDIR, GPUJOBS_*_DIR), and their children inherit both. It returns
// how many it killed.
func killUnder(dir string) int {
	dirs := []string{dir}
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		dirs = append(dirs, real)
	}
	self := os.Getpid()
	killed := map[int]bool{}
	for range 100 {
		found := 0
		for _, pid := range processes() {
			if pid != self && belongsUnder(pid, dirs) {
				syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // it may have exited already
				killed[pid] = true
				found++
			}
		}
		if found == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // a process forked in between is found next round
	}
	return len(killed)
}

func processes() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// belongsUnder reports whether pid's working directory or an environment value lies under one
// of dirs. A zombie has neither, so a killed process is not counted twice.
func belongsUnder(pid int, dirs []string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	under := func(p string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	if cwd, err := os.Readlink(proc + "/cwd"); err == nil && under(strings.TrimSuffix(cwd, " (deleted)")) {
		return true
	}
	env, err := os.ReadFile(proc + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if _, v, ok := bytes.Cut(kv, []byte("=")); ok && under(string(v)) {
			return true
		}
	}
	return false
}
