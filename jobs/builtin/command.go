package builtin

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// Command runs a program of the user's on a worker that allows it: a training script, a
// simulation, a CUDA binary. The worker gives it its own process group and working directory,
// the GPUs it asked for (CUDA_VISIBLE_DEVICES), a memory limit, and the directories GPUJOBS_INPUT_DIR
// (the inputs, staged from earlier jobs' artifacts), GPUJOBS_OUTPUT_DIR (whose files matching
// Outputs become the job's artifacts) and GPUJOBS_CHECKPOINT_DIR (saved periodically and when
// the job is stopped, restored when the job is retried elsewhere).
type Command struct {
	Argv      []string          `json:"argv"`
	Env       map[string]string `json:"env,omitempty"`
	Resources Resources         `json:"resources"`
	// Timeout bounds the program's run; 0 means the job's own timeout.
	Timeout jobs.Duration `json:"timeout,omitempty"`
	// Inputs are artifacts of earlier jobs to stage into the input directory.
	Inputs []Input `json:"inputs,omitempty"`
	// Outputs are glob patterns relative to the output directory ("**" for any depth).
	Outputs []string `json:"outputs,omitempty"`
}

// Resources is what a command needs on its worker.
type Resources struct {
	// GPUs is how many whole GPUs; 0 makes it a CPU job.
	GPUs int `json:"gpus"`
	// GPUMemory is the memory it needs on each GPU.
	GPUMemory jobs.Bytes `json:"gpu_memory,omitempty"`
	// CPUs is how many cores it may use (OMP_NUM_THREADS and the like are set from it).
	CPUs int `json:"cpus,omitempty"`
	// Memory is its memory limit, enforced by the worker.
	Memory jobs.Bytes `json:"memory,omitempty"`
}

// Input names artifacts of an earlier job: all of them, or those whose names match Name (a glob).
type Input struct {
	Job  string `json:"job"`
	Name string `json:"name,omitempty"`
}

// CommandKind is the kind's name.
const CommandKind = "command"

// Limits of a command job's params.
const (
	maxArgv        = 4096
	maxArgBytes    = 128 << 10
	maxEnv         = 512
	defaultMemory  = 1 << 30
	maxCommandTime = 30 * 24 * time.Hour
)

func commandSpec() jobs.Spec {
	return jobs.Spec{
		Kind:    CommandKind,
		Summary: "a program of your own (argv), with its GPUs, memory, inputs, outputs and checkpoints",
		New:     func() jobs.Params { return &Command{Resources: Resources{Memory: defaultMemory}} },
	}
}

func (*Command) Kind() string { return CommandKind }

func (p *Command) Validate() error {
	bad := func(field, reason string, args ...any) error {
		return &jobs.ParamError{Kind: CommandKind, Field: field, Reason: fmt.Sprintf(reason, args...)}
	}
	switch {
	case len(p.Argv) == 0 || p.Argv[0] == "":
		return bad("argv", "empty: give the program and its arguments, e.g. [\"python3\", \"train.py\"]")
	case len(p.Argv) > maxArgv:
		return bad("argv", "%d arguments, allowed 1..%d", len(p.Argv), maxArgv)
	case len(p.Env) > maxEnv:
		return bad("env", "%d variables, allowed 0..%d", len(p.Env), maxEnv)
	}
	size := 0
	for _, a := range p.Argv {
		size += len(a)
		if strings.ContainsRune(a, 0) {
			return bad("argv", "an argument holds a NUL byte")
		}
	}
	if size > maxArgBytes {
		return bad("argv", "%d bytes, allowed up to %d", size, maxArgBytes)
	}
	for k, v := range p.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return bad("env", "variable %q: names must be non-empty, without = or NUL", k)
		}
		if strings.HasPrefix(k, "GPUJOBS_") || k == "CUDA_VISIBLE_DEVICES" {
			return bad("env", "%s is set by the worker", k)
		}
		if strings.HasPrefix(k, "LD_") {
			// The dynamic loader's variables would load code the allowlist never saw.
			return bad("env", "%s is not allowed: LD_* variables would make an allowed program load other code", k)
		}
	}
	r := p.Resources
	if err := jobs.CheckRange(CommandKind, "resources.gpus", r.GPUs, 0, 64); err != nil {
		return err
	}
	if err := jobs.CheckRange(CommandKind, "resources.cpus", r.CPUs, 0, 4096); err != nil {
		return err
	}
	if r.Memory < 16<<20 || r.Memory > 1<<40 {
		return bad("resources.memory", "%s is out of range, allowed 16MiB..1TiB", jobs.FormatBytes(int64(r.Memory)))
	}
	if r.GPUMemory < 0 || r.GPUMemory > 1<<40 || (r.GPUMemory > 0 && r.GPUs == 0) {
		return bad("resources.gpu_memory", "allowed 0..1TiB, and only with resources.gpus > 0")
	}
	if p.Timeout < 0 || time.Duration(p.Timeout) > maxCommandTime {
		return bad("timeout", "%s is out of range, allowed 0..%s", time.Duration(p.Timeout), maxCommandTime)
	}
	if len(p.Inputs) > 256 || len(p.Outputs) > 256 {
		return bad("inputs", "at most 256 inputs and 256 output patterns")
	}
	for _, in := range p.Inputs {
		if err := jobs.ValidateJobID(in.Job); err != nil {
			return bad("inputs", "%v", err)
		}
		if in.Name != "" {
			if err := checkPattern(in.Name); err != nil {
				return bad("inputs", "%v", err)
			}
		}
	}
	for _, o := range p.Outputs {
		if err := checkPattern(o); err != nil {
			return bad("outputs", "%v", err)
		}
	}
	return nil
}

// checkPattern accepts glob patterns relative to a job directory.
func checkPattern(pat string) error {
	if pat == "" || path.IsAbs(pat) || strings.HasPrefix(pat, "../") || strings.Contains(pat, "/../") || pat == ".." || strings.HasSuffix(pat, "/..") {
		return fmt.Errorf("pattern %q: want a path relative to the job's directory, without ..", pat)
	}
	for _, seg := range strings.Split(pat, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("pattern %q: %v", pat, err)
		}
	}
	return nil
}

// Work: a command's cost is unknown to gpujobs; what it declares is what the workers admit it on.
func (p *Command) Work() jobs.Work {
	attempt := 7 * 24 * time.Hour // a program runs as long as it runs: heartbeats watch over it
	if p.Timeout > 0 {
		attempt = time.Duration(p.Timeout) + 2*time.Minute // its own timeout stops it first, with room to save
	}
	return jobs.Work{MemBytes: int64(p.Resources.Memory), GPUs: p.Resources.GPUs, GPUMemBytes: int64(p.Resources.GPUMemory), Timeout: attempt}
}
