package activities

import (
	"context"
	"fmt"

	"github.com/gpujobs/gpujobs/internal/sysinfo"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels"
)

// CPURunner runs kinds' CPU implementations on this machine's CPU.
type CPURunner struct {
	// Impls are the CPU implementations, by kind (kernels.CPU() for the built-ins).
	Impls *jobs.Impls[jobs.Impl]
	// MemLimit is the memory a job may use; 0 means 80% of the machine's (or container's) memory.
	MemLimit int64
}

func (c CPURunner) limit() int64 {
	if c.MemLimit > 0 {
		return c.MemLimit
	}
	return sysinfo.MemoryLimit() / 10 * 8
}

func (c CPURunner) Device() jobs.DeviceInfo {
	return jobs.DeviceInfo{
		WorkerType: jobs.WorkerTypeCPU,
		Name:       fmt.Sprintf("%s, %d threads, %s", sysinfo.CPUModel(), kernels.BLASThreads(), kernels.BLASName),
		Memory:     c.limit(),
	}
}

func (c CPURunner) Fits(w jobs.Work) error {
	if limit := c.limit(); limit > 0 && w.MemBytes > limit {
		return fmt.Errorf("job needs %s of memory, this CPU worker may use %s", jobs.FormatBytes(w.MemBytes), jobs.FormatBytes(limit))
	}
	return nil
}

func (c CPURunner) Run(ctx context.Context, p jobs.Params, report jobs.Reporter) (jobs.Output, error) {
	f, err := c.Impls.Lookup(p.Kind())
	if err != nil {
		return jobs.Output{}, err
	}
	return f(ctx, p, report)
}
