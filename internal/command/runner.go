// Package command runs the command job kind: a user's program on a worker that allows it, in a
// process group and a working directory of its own, with the GPUs it asked for, its memory
// limit, its inputs staged from earlier jobs' artifacts, its outputs uploaded as artifacts, its
// checkpoint directory saved and restored across attempts, and its output lines carried to the
// job's log. It is a side effect of the worker, like the kernels it stands beside; it must not
// import Temporal.
package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// LogWriter receives a job's output lines (joblogs.Writer in a worker).
type LogWriter interface {
	Write(stream, text string)
	Close(ctx context.Context) error
}

// Config configures a worker's command runner. Zero values mean the documented defaults.
type Config struct {
	// Allow lists the executables jobs may run: names (looked up on the worker's PATH) or
	// absolute paths. Empty: the worker runs no command (jobs fail with CommandNotAllowed).
	Allow []string
	// Dir is where the jobs' directories are made; default DefaultDir().
	Dir string
	// Grace is how long a stopped program has between SIGTERM and SIGKILL; default 10s.
	Grace time.Duration
	// CheckpointEvery is how often a changed checkpoint directory is saved; default 30s.
	CheckpointEvery time.Duration
	// GPUs are the devices GPU commands get (nil on CPU workers: a GPU command that falls back
	// to one runs without a GPU).
	GPUs *Devices
	// Store keeps artifacts and checkpoints; nil: a job with inputs or outputs fails clearly and
	// checkpoints are not kept.
	Store artifacts.Store
	// Logs opens a job's log; nil keeps only the last lines of stderr, for the error.
	Logs   func(jobID string, attempt int) LogWriter
	Logger *zap.Logger
}

// Runner runs command jobs.
type Runner struct {
	c       Config
	allowed map[string]bool // names and absolute paths
	limiter limiter
}

// NewRunner checks the configuration and returns a runner.
func NewRunner(c Config) (*Runner, error) {
	var err error
	if c.Dir, err = makeCommandDir(c.Dir); err != nil {
		return nil, err
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	r := &Runner{c: c, allowed: map[string]bool{}, limiter: newLimiter(c.Logger)}
	for _, a := range c.Allow {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if strings.Contains(a, "/") && !filepath.IsAbs(a) {
			return nil, fmt.Errorf("--allow-commands %q: give a program name or an absolute path", a)
		}
		r.allowed[a] = true
	}
	return r, nil
}

// Impl is the runner as the command kind's implementation.
func (r *Runner) Impl() jobs.Impl { return jobs.Typed(r.Run) }

func (r *Runner) allowList() string {
	if len(r.c.Allow) == 0 {
		return "none"
	}
	return strings.Join(r.c.Allow, ", ")
}

// resolve finds the executable of argv0 and checks the allowlist.
func (r *Runner) resolve(argv0 string) (string, error) {
	if len(r.allowed) == 0 {
		return "", jobs.Fail(jobs.ErrCommandNotAllowed, false,
			"this worker runs no commands: start it with --allow-commands %s (a comma-separated list of programs it may run)", filepath.Base(argv0))
	}
	if strings.Contains(argv0, "/") {
		if !filepath.IsAbs(argv0) || !r.allowed[filepath.Clean(argv0)] {
			return "", jobs.Fail(jobs.ErrCommandNotAllowed, false, "%s is not allowed on this worker (it allows %s): add it to --allow-commands", argv0, r.allowList())
		}
		if _, err := os.Stat(argv0); err != nil {
			return "", jobs.Fail(jobs.ErrCommandFailed, false, "%s: not found on worker %s", argv0, hostname())
		}
		return argv0, nil
	}
	path, err := exec.LookPath(argv0)
	if !r.allowed[argv0] && (err != nil || !r.allowed[path]) {
		return "", jobs.Fail(jobs.ErrCommandNotAllowed, false, "%s is not allowed on this worker (it allows %s): add it to --allow-commands", argv0, r.allowList())
	}
	if err != nil {
		return "", jobs.Fail(jobs.ErrCommandFailed, false, "%s: no such program on worker %s's PATH", argv0, hostname())
	}
	return path, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// Run runs one command job to its end.
func (r *Runner) Run(ctx context.Context, p *builtin.Command, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	info, _ := jobs.RunInfoFrom(ctx)
	if info.JobID == "" {
		info.JobID = "job-local"
	}
	exe, err := r.resolve(p.Argv[0])
	if err != nil {
		return jobs.Output{}, err
	}
	if (len(p.Inputs) > 0 || len(p.Outputs) > 0) && r.c.Store == nil {
		return jobs.Output{}, jobs.Fail(jobs.ErrCommandNotAllowed, false, "this worker has no artifact store for the job's inputs and outputs: start it with --artifacts")
	}
	var gpus []int
	if p.Resources.GPUs > 0 && r.c.GPUs != nil {
		if gpus, err = r.c.GPUs.Take(info.JobID, p.Resources.GPUs, int64(p.Resources.GPUMemory)); err != nil {
			return jobs.Output{}, err
		}
		defer r.c.GPUs.Release(info.JobID)
	}

	dirs, err := makeDirs(r.c.Dir, info)
	if err != nil {
		return jobs.Output{}, err
	}
	defer os.RemoveAll(dirs.root)
	logs := r.openLog(info)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := logs.Close(cctx); err != nil {
			r.c.Logger.Warn("job log not flushed", zap.String("job_id", info.JobID), zap.Error(err))
		}
	}()

	// Stage the inputs and restore the checkpoint.
	for _, in := range p.Inputs {
		got, err := loadDir(ctx, r.c.Store, artifacts.OutputPrefix(in.Job), filepath.Join(dirs.input, in.Job), in.Name)
		if err != nil {
			return jobs.Output{}, jobs.Fail(jobs.ErrKernel, true, "stage the inputs of %s: %v", in.Job, err)
		}
		if len(got) == 0 {
			return jobs.Output{}, jobs.Fail(jobs.ErrInvalidParams, false, "input %s%s: that job has no such artifact", in.Job, nameNote(in.Name))
		}
		logs.Write("gpujobs", fmt.Sprintf("staged %d file(s) of %s into %s", len(got), in.Job, filepath.Join("$GPUJOBS_INPUT_DIR", in.Job)))
	}
	var cp *Checkpoints
	var resumed string
	if r.c.Store != nil {
		if cp, err = NewCheckpoints(r.c.Store, info.JobID, dirs.checkpoint); err != nil {
			return jobs.Output{}, err
		}
		if resumed, err = cp.Restore(ctx); err != nil {
			return jobs.Output{}, jobs.Fail(jobs.ErrKernel, true, "%v", err)
		}
		if resumed != "" {
			logs.Write("gpujobs", "restored the checkpoint: "+resumed+" (attempt "+strconv.Itoa(info.Attempt)+")")
		}
	}

	cmd := exec.Command(exe, p.Argv[1:]...)
	cmd.Args[0] = p.Argv[0]
	cmd.Dir = dirs.work
	cmd.Env = environment(p, info, dirs, gpus, r.c.GPUs != nil, resumed != "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	lim, err := r.limiter.prepare(cmd, info.JobID, int64(p.Resources.Memory))
	if err != nil {
		return jobs.Output{}, err
	}
	defer lim.release()
	if lim.cgroup != "" {
		// For the worker that clears this directory if this one dies with the job running.
		os.WriteFile(filepath.Join(dirs.root, cgroupFile), []byte(lim.cgroup), 0o644) //nolint:errcheck // the processes' environment finds them too
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	setup := time.Since(t0)
	start := time.Now()
	// PR_SET_PDEATHSIG fires when the thread that started the program exits, not only the worker,
	// and Go ends a thread whose goroutine exits while locked to it (gorgonia's context goroutine
	// does when it cannot make its context current; any cgo library may). Held by this goroutine
	// until the program is gone, the thread cannot be taken and ended by another.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return jobs.Output{}, jobs.Fail(jobs.ErrCommandFailed, false, "start %s: %v", p.Argv[0], err)
	}
	lim.started(cmd.Process.Pid)
	r.c.Logger.Info("command started", zap.String("job_id", info.JobID), zap.Int("pid", cmd.Process.Pid), zap.Strings("argv", p.Argv), zap.Ints("gpus", gpus))

	tail := newTail(20)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		scanLines(stdout, func(l string) { logs.Write("stdout", l); progress(l, report) })
	}()
	go func() { defer wg.Done(); scanLines(stderr, func(l string) { logs.Write("stderr", l); tail.add(l) }) }()

	// A cancel, or the params' timeout, stops the whole group: SIGTERM, then SIGKILL after the
	// grace. Meanwhile a changed checkpoint directory is saved every CheckpointEvery.
	runCtx, cancel := ctx, func() {}
	if p.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, time.Duration(p.Timeout))
	}
	defer cancel()
	exited := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-exited:
			return
		case <-runCtx.Done():
		}
		logs.Write("gpujobs", "stopping the program: SIGTERM to its process group")
		lim.signal(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(r.c.Grace):
			logs.Write("gpujobs", fmt.Sprintf("still running %s after SIGTERM: SIGKILL", r.c.Grace))
			lim.signal(cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	stopSaving := func() {}
	if cp != nil {
		stopSaving = every(ctx, r.c.CheckpointEvery, func() {
			if err := cp.Save(context.WithoutCancel(ctx)); err != nil {
				logs.Write("gpujobs", "checkpoint not saved: "+err.Error())
			}
		})
	}
	wg.Wait() // the pipes close when the program (and every process holding them) is gone
	werr := cmd.Wait()
	close(exited)
	<-stopped
	stopSaving()
	// Nothing of the job outlives it: background processes it left behind die with the group.
	lim.signal(cmd.Process.Pid, syscall.SIGKILL)
	elapsed := time.Since(start)
	if cp != nil {
		// Saved when the program stops too, whatever the reason: a retry resumes from it.
		if err := cp.Save(context.WithoutCancel(ctx)); err != nil {
			logs.Write("gpujobs", "checkpoint not saved: "+err.Error())
		}
	}

	code := cmd.ProcessState.ExitCode()
	if werr != nil || code != 0 {
		switch {
		case ctx.Err() != nil:
			return jobs.Output{}, fmt.Errorf("%s stopped: %w", p.Argv[0], ctx.Err())
		case runCtx.Err() != nil:
			return jobs.Output{}, jobs.Fail(jobs.ErrCommandFailed, false, "%s ran past its timeout of %s and was stopped%s", p.Argv[0], time.Duration(p.Timeout), tail.note())
		case lim.oom() || (lim.rlimit && tail.mentionsMemory()):
			return jobs.Output{}, jobs.Fail(jobs.ErrOutOfMemory, false, "%s exceeded its memory limit of %s (resources.memory, %s)%s",
				p.Argv[0], jobs.FormatBytes(int64(p.Resources.Memory)), lim.how(), tail.note())
		}
		return jobs.Output{}, jobs.Fail(jobs.ErrCommandFailed, false, "%s %s%s", p.Argv[0], exitText(cmd.ProcessState), tail.note())
	}

	out := jobs.Output{SetupTime: setup, ProcessingTime: elapsed, ExitCode: &code, GPUs: gpus, Threads: p.Resources.CPUs}
	if resumed != "" {
		out.ResumedFrom = resumed
	}
	if len(p.Outputs) > 0 {
		arts, err := saveDir(context.WithoutCancel(ctx), r.c.Store, artifacts.OutputPrefix(info.JobID), dirs.output, p.Outputs)
		if err != nil {
			return jobs.Output{}, jobs.Fail(jobs.ErrKernel, true, "upload the outputs: %v", err)
		}
		out.Artifacts = arts
		logs.Write("gpujobs", fmt.Sprintf("uploaded %d output file(s)", len(arts)))
	}
	if cp != nil {
		if err := cp.Forget(context.WithoutCancel(ctx)); err != nil {
			r.c.Logger.Warn("checkpoint of a completed job not deleted", zap.String("job_id", info.JobID), zap.Error(err))
		}
	}
	return out, nil
}

func nameNote(pattern string) string {
	if pattern == "" {
		return ""
	}
	return " (" + pattern + ")"
}

func (r *Runner) openLog(info jobs.RunInfo) LogWriter {
	if r.c.Logs == nil {
		return nopLog{}
	}
	return r.c.Logs(info.JobID, info.Attempt)
}

type nopLog struct{}

func (nopLog) Write(string, string)        {}
func (nopLog) Close(context.Context) error { return nil }

// dirs are one attempt's directories.
type dirs struct{ root, work, input, output, checkpoint, tmp string }

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func makeDirs(base string, info jobs.RunInfo) (dirs, error) {
	root, err := os.MkdirTemp(base, unsafeName.ReplaceAllString(info.JobID, "_")+"-"+strconv.Itoa(info.Attempt)+"-")
	if err != nil {
		return dirs{}, err
	}
	d := dirs{root: root, work: filepath.Join(root, "work"), input: filepath.Join(root, "input"),
		output: filepath.Join(root, "output"), checkpoint: filepath.Join(root, "checkpoint"), tmp: filepath.Join(root, "tmp")}
	for _, p := range []string{d.work, d.input, d.output, d.checkpoint, d.tmp} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return dirs{}, err
		}
	}
	return d, nil
}

// environment is the program's environment: not the worker's (which holds its credentials), but
// a small base, the job's own variables, and gpujobs's.
func environment(p *builtin.Command, info jobs.RunInfo, d dirs, gpus []int, gpuWorker, resumed bool) []string {
	env := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": d.work, "TMPDIR": d.tmp, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
	}
	for k, v := range p.Env {
		env[k] = v
	}
	if n := p.Resources.CPUs; n > 0 {
		for _, k := range []string{"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"} {
			if _, set := p.Env[k]; !set {
				env[k] = strconv.Itoa(n)
			}
		}
	}
	env["GPUJOBS_JOB_ID"] = info.JobID
	env["GPUJOBS_ATTEMPT"] = strconv.Itoa(info.Attempt)
	env["GPUJOBS_INPUT_DIR"] = d.input
	env["GPUJOBS_OUTPUT_DIR"] = d.output
	env["GPUJOBS_CHECKPOINT_DIR"] = d.checkpoint
	if resumed {
		env["GPUJOBS_RESUMED"] = "1"
	}
	// A CPU job, or a GPU job on a worker without GPUs, sees none; a GPU job sees only its own.
	env["CUDA_VISIBLE_DEVICES"] = VisibleDevices(gpus)
	_ = gpuWorker
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// scanLines calls fn with each line read from r (long lines split at 64 KiB).
func scanLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			fn(strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// progress reads the line protocol GPUJOBS_PROGRESS <fraction> [loss=<value>] and reports it.
func progress(line string, report jobs.Reporter) {
	rest, ok := strings.CutPrefix(line, "GPUJOBS_PROGRESS ")
	if !ok {
		return
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return
	}
	f, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || f < 0 || f > 1 {
		return
	}
	p := jobs.Progress{Iteration: int(f*1000 + 0.5), Total: 1000}
	for _, kv := range fields[1:] {
		if v, ok := strings.CutPrefix(kv, "loss="); ok {
			if loss, err := strconv.ParseFloat(v, 64); err == nil {
				p.Loss = &loss
			}
		}
	}
	report(p)
}

func exitText(st *os.ProcessState) string {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", st.ExitCode())
}

// tail keeps the last lines of stderr, for the error of a program that failed.
type tail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(l) > 500 {
		l = l[:500] + "…"
	}
	t.lines = append(t.lines, l)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

func (t *tail) note() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "; the last lines of its stderr: " + strings.Join(t.lines, " | ")
}

func (t *tail) mentionsMemory() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.lines {
		if strings.Contains(l, "MemoryError") || strings.Contains(l, "Cannot allocate memory") || strings.Contains(l, "out of memory") ||
			strings.Contains(l, "std::bad_alloc") {
			return true
		}
	}
	return false
}
