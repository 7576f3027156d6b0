package workers

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/cli"
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

// runner opens the kernel runner of an executing role.
func (c Config) runner(o Options, cpu *jobs.Impls[jobs.Impl], logger *zap.Logger) (activities.Runner, func(), error) {
	switch role := o.Role; role {
	case RoleCPU:
		budget := int64(o.MemoryBudget)
		if budget <= 0 {
			budget = activities.DefaultMemoryBudget()
		}
		ledger := &hostmem.Ledger{Path: o.MemoryLedger, Budget: budget, Available: sysinfo.MemoryAvailable, Margin: 256 << 20}
		if _, err := ledger.Entries(); err != nil {
			return nil, nil, err // an unusable ledger path is a configuration mistake
		}
		return activities.CPURunner{Impls: cpu, MemLimit: int64(o.MemoryLimit), Ledger: ledger}, func() {}, nil
	case RoleGPU:
		if c.GPU == nil {
			return nil, nil, errors.New("this worker binary has no CUDA support: run bin/worker-gpu (built by make build-gpu) on a GPU node")
		}
		return c.GPU(logger)
	}
	return nil, nil, fmt.Errorf("unknown role %q: use scheduler, cpu, gpu or bridge", o.Role)
}
