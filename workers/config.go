package workers

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/command"
	"github.com/gpujobs/gpujobs/internal/hostmem"
	"github.com/gpujobs/gpujobs/internal/sysinfo"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/scheduling"
)

// Config is what a worker binary is built with. The zero Config is bin/worker: the built-in
// kinds with their CPU implementations, the default scheduling strategy, no GPU.
type Config struct {
	// Name is the command's name, for --help and errors ("worker" when empty).
	Name string
	// DefaultRole is the role when neither --role nor WORKER_TYPE says (cpu when empty).
	DefaultRole string
	// Kinds are job kinds added to the built-in ones. Every process that decodes a kind's params
	// needs it: the scheduler (validation, estimates) and the workers that run it.
	Kinds []Kind
	// Strategy chooses the device of auto and gpu jobs in the scheduler role; nil means
	// scheduling.Default.
	Strategy scheduling.Strategy
	// GPU opens this binary's GPU runner for the gpu role (bin/worker-gpu passes the CUDA one);
	// nil means the binary cannot take that role.
	GPU func(logger *zap.Logger) (activities.Runner, func(), error)
}

// Kind is a job kind and its CPU implementation. GPU implementations are registered with the
// GPU runner (kernels/cuda), apart from the kind.
type Kind struct {
	Spec jobs.Spec
	// CPU runs the kind on a CPU worker; nil when it has no CPU implementation (a job of the kind
	// that reaches a CPU worker then fails with a NoImplementation error naming kind and device).
	CPU jobs.Impl
}

// Main runs the worker command built with c and exits: what a worker program's main calls.
func Main(c Config) {
	name := c.Name
	if name == "" {
		name = "worker"
	}
	cli.Main(name, Command(c))
}

// registries returns the kinds this binary knows and their CPU implementations; a duplicate is
// an error, so a mistake stops the worker at start-up.
func (c Config) registries() (*jobs.Kinds, *jobs.Impls[jobs.Impl], error) {
	specs := make([]jobs.Spec, len(c.Kinds))
	for i, k := range c.Kinds {
		specs[i] = k.Spec
	}
	kinds, err := builtin.Kinds().With(specs...)
	if err != nil {
		return nil, nil, err
	}
	cpu := kernels.CPU()
	for _, k := range c.Kinds {
		if k.CPU == nil {
			continue
		}
		if err := cpu.Add(k.Spec.Kind, k.CPU); err != nil {
			return nil, nil, err
		}
	}
	return kinds, cpu, nil
}

// assembly is what an executing worker is built of, beyond its options: the artifact store and
// the log publisher that command jobs use (nil until configured).
type assembly struct {
	c      Config
	o      Options
	logger *zap.Logger
	store  artifacts.Store
	logs   func(jobID string, attempt int) command.LogWriter
	dir    *command.WorkDir // this worker's own part of --command-dir
}

// checkpoints opens jobID's checkpoints in a fresh local directory, restored from the artifact
// store; done removes the directory, and the saved checkpoint too when the job completed.
func (a *assembly) checkpoints(ctx context.Context, jobID string) (jobs.Checkpointer, func(completed bool), error) {
	dir, err := os.MkdirTemp(a.dir.Path, "checkpoint-")
	if err != nil {
		return nil, nil, err
	}
	cp, err := command.NewCheckpoints(a.store, jobID, dir)
	if err == nil {
		_, err = cp.Restore(ctx)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return cp, func(completed bool) {
		if completed {
			if err := cp.Forget(context.WithoutCancel(ctx)); err != nil {
				a.logger.Warn("the checkpoint of a completed job was not deleted", zap.String("job_id", jobID), zap.Error(err))
			}
		}
		os.RemoveAll(dir)
	}, nil
}

// ledger is the host's memory ledger.
func (a *assembly) ledger() (*hostmem.Ledger, error) {
	budget := int64(a.o.MemoryBudget)
	if budget <= 0 {
		budget = activities.DefaultMemoryBudget()
	}
	l := &hostmem.Ledger{Path: a.o.MemoryLedger, Budget: budget, Available: sysinfo.MemoryAvailable, Margin: 256 << 20}
	if _, err := l.Entries(); err != nil {
		return nil, err // an unusable ledger path is a configuration mistake
	}
	return l, nil
}

// runner opens the kernel runner of an executing role. Command jobs are run by the command
// runner on every executing worker; one without --allow-commands refuses them and says how to
// allow them.
func (a *assembly) runner(cpu *jobs.Impls[jobs.Impl]) (activities.Runner, func(), error) {
	ledger, err := a.ledger()
	if err != nil {
		return nil, nil, err
	}
	switch role := a.o.Role; role {
	case RoleCPU:
		cmd, err := a.commandRunner(nil)
		if err != nil {
			return nil, nil, err
		}
		if err := cpu.Add(builtin.CommandKind, cmd.Impl()); err != nil {
			return nil, nil, err
		}
		return activities.CPURunner{Impls: cpu, MemLimit: int64(a.o.MemoryLimit), Ledger: ledger}, func() {}, nil
	case RoleGPU:
		var base activities.Runner
		closeBase := func() {}
		var devices []command.Device
		switch {
		case a.o.Commands.GPUDevices != "":
			if devices, err = command.ParseDevices(a.o.Commands.GPUDevices); err != nil {
				return nil, nil, fmt.Errorf("--gpu-devices: %w", err)
			}
			base = kernelsNone{devices: devices}
		case a.c.GPU != nil:
			if base, closeBase, err = a.c.GPU(a.logger); err != nil {
				return nil, nil, err
			}
			if l, ok := base.(interface{ GPUs() []jobs.DeviceInfo }); ok {
				for _, d := range l.GPUs() {
					devices = append(devices, command.Device{Index: d.Index, Memory: d.Memory})
				}
			}
		default:
			return nil, nil, errors.New("this worker binary has no CUDA support: run bin/worker-gpu (built by make build-gpu) on a GPU node, or give --gpu-devices to run only command jobs on the GPUs")
		}
		cmd, err := a.commandRunner(command.NewDevices(devices))
		if err != nil {
			closeBase()
			return nil, nil, err
		}
		impls := jobs.NewImpls[jobs.Impl](jobs.WorkerTypeGPU)
		if err := impls.Add(builtin.CommandKind, cmd.Impl()); err != nil {
			closeBase()
			return nil, nil, err
		}
		own := ownKinds{CPURunner: activities.CPURunner{Impls: impls, MemLimit: int64(a.o.MemoryLimit), Ledger: ledger}, device: base.Device()}
		return withKinds{Runner: base, own: own, slots: len(devices)}, closeBase, nil
	}
	return nil, nil, fmt.Errorf("unknown role %q: use scheduler, cpu, gpu or bridge", a.o.Role)
}
