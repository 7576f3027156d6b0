package workers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/command"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// CommandOptions are the settings of the command job kind on an executing worker.
type CommandOptions struct {
	// Allow lists the programs command jobs may run (--allow-commands); empty: none.
	Allow []string
	// Dir holds the jobs' working directories; Grace is between SIGTERM and SIGKILL;
	// CheckpointEvery is how often a changed checkpoint is saved.
	Dir             string
	Grace           time.Duration
	CheckpointEvery time.Duration
	// GPUDevices, on bin/worker, makes the gpu role serve command jobs on these GPUs without
	// gpujobs's CUDA kernels: "0,1" or "0:80GiB,1:80GiB".
	GPUDevices string
}

// AddFlags registers the command kind's flags.
func (o *CommandOptions) AddFlags(fs *pflag.FlagSet) {
	var allow string
	fs.Func("allow-commands", "cpu, gpu: the programs command jobs may run, comma-separated names (looked up on PATH) or absolute paths, e.g. python3,sh (env GPUJOBS_ALLOW_COMMANDS; default none: command jobs are refused)",
		func(s string) error { o.Allow = splitList(s); return nil })
	allow = config.Env("GPUJOBS_ALLOW_COMMANDS", "")
	o.Allow = splitList(allow)
	fs.StringVar(&o.Dir, "command-dir", config.Env("GPUJOBS_COMMAND_DIR", ""), "cpu, gpu: where command jobs' working directories are made (env GPUJOBS_COMMAND_DIR; default $TMPDIR/gpujobs-jobs-<uid>)")
	fs.DurationVar(&o.Grace, "command-grace", config.EnvDuration("GPUJOBS_COMMAND_GRACE", 10*time.Second), "cpu, gpu: how long a stopped command has between SIGTERM and SIGKILL (env GPUJOBS_COMMAND_GRACE)")
	fs.DurationVar(&o.CheckpointEvery, "checkpoint-every", config.EnvDuration("GPUJOBS_CHECKPOINT_EVERY", 30*time.Second), "cpu, gpu: how often a command job's changed checkpoint directory is saved (env GPUJOBS_CHECKPOINT_EVERY)")
	fs.StringVar(&o.GPUDevices, "gpu-devices", config.Env("GPUJOBS_GPU_DEVICES", ""), "gpu role of bin/worker: serve command jobs on these GPUs, e.g. 0,1 or 0:80GiB,1:80GiB, without gpujobs's CUDA kernels (env GPUJOBS_GPU_DEVICES)")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// commandRunner builds the command kind's runner for an executing worker.
func (w *assembly) commandRunner(gpus *command.Devices) (*command.Runner, error) {
	c := w.o.Commands
	return command.NewRunner(command.Config{
		Allow: c.Allow, Dir: w.dir.Path, Grace: c.Grace, CheckpointEvery: c.CheckpointEvery, GPUs: gpus,
		Store: w.store, Logs: w.logs, Logger: w.logger.Named("command"),
	})
}

// withKinds is a GPU worker's runner: the command kind, which the CUDA runner does not run, goes
// to a runner of its own (admitted on the host's memory ledger, with the GPUs of the command
// runner's book), every other kind to the device's runner.
type withKinds struct {
	activities.Runner
	own   ownKinds
	slots int // command jobs the GPUs hold at once, for the worker's concurrency
}

// Route implements activities.Router.
func (r withKinds) Route(kind string) activities.Runner {
	if _, err := r.own.Impls.Lookup(kind); err == nil {
		return r.own
	}
	return r.Runner
}

// Slots is the device runner's, or one per GPU for a worker of command jobs only.
func (r withKinds) Slots() int {
	if s, ok := r.Runner.(interface{ Slots() int }); ok {
		return s.Slots()
	}
	return max(r.slots, 1)
}

// ownKinds runs the worker's own kinds, described as the device they run beside.
type ownKinds struct {
	activities.CPURunner
	device jobs.DeviceInfo
}

func (o ownKinds) Device() jobs.DeviceInfo { return o.device }

// kernelsNone is the device runner of a gpu role without CUDA kernels (bin/worker
// --gpu-devices): it runs command jobs only, and says so for every other kind.
type kernelsNone struct {
	devices []command.Device
}

func (k kernelsNone) Device() jobs.DeviceInfo {
	idx := make([]string, len(k.devices))
	var mem int64
	for i, d := range k.devices {
		idx[i] = fmt.Sprint(d.Index)
		mem = max(mem, d.Memory)
	}
	return jobs.DeviceInfo{WorkerType: jobs.WorkerTypeGPU, Name: fmt.Sprintf("GPUs %s (command jobs only)", strings.Join(idx, ",")), Memory: mem}
}
func (kernelsNone) Fits(jobs.Work) error { return nil }
func (kernelsNone) Admit(string, jobs.Work) (func() error, error) {
	return func() error { return nil }, nil
}
func (kernelsNone) Run(_ context.Context, p jobs.Params, _ jobs.Reporter) (jobs.Output, error) {
	return jobs.Output{}, &jobs.NoImplementationError{Kind: p.Kind(), Device: jobs.WorkerTypeGPU, Known: []string{builtin.CommandKind}}
}
