package activities

import (
	"context"
	"fmt"

	"github.com/gpujobs/gpujobs/internal/sysinfo"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/workflows"
)

// CPURunner runs kernels on this machine's CPU with the compiled-in BLAS.
type CPURunner struct {
	// MemLimit is the memory a job may use; 0 means 80% of the machine's (or container's) memory.
	MemLimit int64
}

func (c CPURunner) limit() int64 {
	if c.MemLimit > 0 {
		return c.MemLimit
	}
	return sysinfo.MemoryLimit() / 10 * 8
}

func (c CPURunner) Device() DeviceInfo {
	return DeviceInfo{
		WorkerType: workflows.WorkerTypeCPU,
		Name:       fmt.Sprintf("%s, %d threads, %s", sysinfo.CPUModel(), kernels.BLASThreads(), kernels.BLASName),
		Memory:     c.limit(),
	}
}

func (c CPURunner) Fits(w kernels.Work) error {
	if limit := c.limit(); limit > 0 && w.MemBytes > limit {
		return fmt.Errorf("job needs %s of memory, this CPU worker may use %s", kernels.FormatBytes(w.MemBytes), kernels.FormatBytes(limit))
	}
	return nil
}

func (CPURunner) Run(ctx context.Context, p kernels.Params, report kernels.Reporter) (kernels.Output, error) {
	return p.RunCPU(ctx, report)
}
