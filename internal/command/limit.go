package command

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
)

// limiter enforces a command job's memory limit: with a cgroup v2 of its own where the worker
// may create one (the kernel then kills the job's processes, and only them, when they exceed it,
// and cgroup.kill ends every process of the job), else with RLIMIT_AS on the program (an
// allocation beyond it fails, and the program fails with it).
type limiter struct {
	cgroup string // the worker's cgroup v2 directory with the memory controller for children; "" without
	logger *zap.Logger
}

func newLimiter(logger *zap.Logger) limiter {
	l := limiter{logger: logger}
	if dir, err := childCgroups(); err == nil {
		l.cgroup = dir
	} else {
		logger.Info("command jobs' memory limits use RLIMIT_AS", zap.String("why not a cgroup", err.Error()))
	}
	return l
}

// childCgroups returns the worker's cgroup v2 directory if it can hold job cgroups with a
// memory limit.
func childCgroups() (string, error) {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		return "", fmt.Errorf("no cgroup v2 hierarchy at %s", root)
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			path = p
		}
	}
	if path == "" {
		return "", fmt.Errorf("the worker is in no cgroup v2")
	}
	dir := filepath.Join(root, path)
	sub, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(sub), "memory") {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
			return "", fmt.Errorf("memory controller not delegated to %s: %w", dir, err)
		}
	}
	probe, err := os.MkdirTemp(dir, "gpujobs-probe-")
	if err != nil {
		return "", fmt.Errorf("cannot create cgroups under %s: %w", dir, err)
	}
	defer os.Remove(probe)
	if err := os.WriteFile(filepath.Join(probe, "memory.max"), []byte("max"), 0o644); err != nil {
		return "", fmt.Errorf("no memory.max in %s: %w", probe, err)
	}
	return dir, nil
}

// limit is one job's enforcement.
type limit struct {
	mem    int64
	cgroup string   // the job's cgroup directory, or ""
	fd     *os.File // open on it while the process starts
	rlimit bool
	logger *zap.Logger
}

// prepare arranges for cmd to run under a memory limit of mem bytes.
func (l limiter) prepare(cmd *exec.Cmd, jobID string, mem int64) (*limit, error) {
	lim := &limit{mem: mem, logger: l.logger}
	if l.cgroup != "" {
		if err := lim.makeCgroup(l.cgroup, jobID, cmd); err == nil {
			return lim, nil
		} else {
			l.logger.Warn("job cgroup not made; using RLIMIT_AS", zap.String("job_id", jobID), zap.Error(err))
		}
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, jobs.Fail(jobs.ErrCommandFailed, false, "this worker cannot enforce a command's memory limit: no cgroup v2 to create and no prlimit (util-linux)")
	}
	// prlimit sets RLIMIT_AS and execs the program: the same process, with the limit.
	cmd.Args = append([]string{"prlimit", "--as=" + strconv.FormatInt(mem, 10), "--", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = prlimit
	lim.rlimit = true
	return lim, nil
}

func (lim *limit) makeCgroup(parent, jobID string, cmd *exec.Cmd) error {
	dir, err := os.MkdirTemp(parent, "gpujobs-"+unsafeName.ReplaceAllString(jobID, "_")+"-")
	if err != nil {
		return err
	}
	for file, v := range map[string]string{"memory.max": strconv.FormatInt(lim.mem, 10), "memory.swap.max": "0"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil && file == "memory.max" {
			os.Remove(dir)
			return err
		}
	}
	fd, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return err
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	lim.cgroup, lim.fd = dir, fd
	return nil
}

// started is called once the process runs.
func (lim *limit) started(int) {
	if lim.fd != nil {
		lim.fd.Close()
		lim.fd = nil
	}
}

// signal sends sig to the job's process group; a SIGKILL also ends every process of its cgroup,
// including those that left the group.
func (lim *limit) signal(pid int, sig syscall.Signal) {
	syscall.Kill(-pid, sig) //nolint:errcheck // the group may be gone already
	if sig == syscall.SIGKILL && lim.cgroup != "" {
		os.WriteFile(filepath.Join(lim.cgroup, "cgroup.kill"), []byte("1"), 0o644) //nolint:errcheck // kernels before 5.14 lack it
	}
}

// oom reports whether the kernel killed a process of the job's cgroup for its memory limit.
func (lim *limit) oom() bool {
	if lim.cgroup == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(lim.cgroup, "memory.events"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok && strings.TrimSpace(v) != "0" {
			return true
		}
	}
	return false
}

func (lim *limit) how() string {
	if lim.cgroup != "" {
		return "enforced by a cgroup v2 memory.max"
	}
	return "enforced as RLIMIT_AS: an allocation beyond it fails"
}

// release removes the job's cgroup.
func (lim *limit) release() {
	if lim.fd != nil {
		lim.fd.Close()
	}
	if lim.cgroup != "" {
		os.Remove(lim.cgroup) //nolint:errcheck // best effort: an empty cgroup is all that is left
	}
}
