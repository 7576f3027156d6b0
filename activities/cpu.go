package activities

import (
	"context"
	"fmt"

	"github.com/gpujobs/gpujobs/internal/hostmem"
	"github.com/gpujobs/gpujobs/internal/sysinfo"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels"
)

// CPURunner runs kinds' CPU implementations on this machine's CPU.
type CPURunner struct {
	// Impls are the CPU implementations, by kind (kernels.CPU() for the built-ins).
	Impls *jobs.Impls[jobs.Impl]
	// MemLimit is the most memory one job of this worker may use (--memory-limit); 0 means the
	// ledger's budget, or 80% of the machine's (or container's) memory without a ledger.
	MemLimit int64
	// Ledger shares the host's memory among the jobs of all its workers; nil admits on MemLimit
	// alone.
	Ledger *hostmem.Ledger
}

// DefaultMemoryBudget is the share of the machine's (or container's) memory that gpujobs jobs
// may use together: the rest is for the operating system, the workers themselves and the
// services beside them.
func DefaultMemoryBudget() int64 { return sysinfo.MemoryLimit() / 10 * 8 }

func (c CPURunner) limit() int64 {
	switch {
	case c.MemLimit > 0:
		return c.MemLimit
	case c.Ledger != nil && c.Ledger.Budget > 0:
		return c.Ledger.Budget
	}
	return DefaultMemoryBudget()
}

// Device describes the CPU and the worker's memory limit.
func (c CPURunner) Device() jobs.DeviceInfo {
	return jobs.DeviceInfo{
		WorkerType: jobs.WorkerTypeCPU,
		Name:       fmt.Sprintf("%s, %d threads, %s", sysinfo.CPUModel(), kernels.BLASThreads(), kernels.BLASName),
		Memory:     c.limit(),
	}
}

// Fits fails (with jobs.ErrTooBig) a job that can never run here: its memory estimate exceeds
// this worker's limit.
func (c CPURunner) Fits(w jobs.Work) error {
	if limit := c.limit(); limit > 0 && w.MemBytes > limit {
		return fmt.Errorf("%w: the job needs %s of memory, this CPU worker may use %s (--memory-limit)",
			jobs.ErrTooBig, jobs.FormatBytes(w.MemBytes), jobs.FormatBytes(limit))
	}
	return nil
}

// Admit reserves the job's memory in the host's ledger, or says (with a *hostmem.BusyError, a
// jobs.ErrBusy) that it does not fit what the host's workers have left now.
func (c CPURunner) Admit(jobID string, w jobs.Work) (release func() error, err error) {
	if c.Ledger == nil || w.MemBytes <= 0 {
		return func() error { return nil }, nil
	}
	return c.Ledger.Reserve(jobID, w.MemBytes)
}

// Run runs p's CPU implementation.
func (c CPURunner) Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
	f, err := c.Impls.Lookup(p.Kind())
	if err != nil {
		return jobs.Output{}, err
	}
	return f(ctx, p, report)
}
