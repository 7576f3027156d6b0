// Command worker runs a gpujobs worker: the scheduler role (JobWorkflow on job_queue) or the cpu
// role (kernels on cpu_queue). GPU kernels live in a separate binary, worker-gpu, because the
// CUDA bindings end any process that starts on a machine without a GPU.
package main

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/workerapp"
)

func main() { cli.Main("worker", workerapp.Command("worker", workerapp.RoleCPU, cpuRunner)) }

func cpuRunner(role string, _ *zap.Logger) (activities.Runner, func(), error) {
	switch role {
	case workerapp.RoleCPU:
		return activities.CPURunner{}, func() {}, nil
	case workerapp.RoleGPU:
		return nil, nil, errors.New("this worker binary has no CUDA support: run bin/worker-gpu (built by make build-gpu) on a GPU node")
	}
	return nil, nil, fmt.Errorf("unknown role %q: use scheduler, cpu or gpu", role)
}
