//go:build cuda

// Command worker-gpu is the gpujobs worker for GPU nodes: the gpu role runs jobs' kernels on this
// machine's GPUs (package kernels/cuda), one job per GPU at a time by default. It is the worker
// command with a CUDA runner; the plain worker binary stays free of CUDA because the CUDA
// bindings stop any process that starts without a GPU. Here that is intended: on a machine
// without one, worker-gpu stops at once with a single line (see kernels/cuda/probe).
package main

import (
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda"
	"github.com/gpujobs/gpujobs/workers"
)

func main() {
	var o cuda.Options
	cmd := workers.Command(workers.Config{
		Name:        "worker-gpu",
		DefaultRole: workers.RoleGPU,
		GPU:         func(logger *zap.Logger) (activities.Runner, func(), error) { return openGPU(o, logger) },
	})
	cmd.Flags().StringVar(&o.GEMM, "gemm", config.Env("GPUJOBS_GEMM", cuda.GEMMAuto), "gpu: SGEMM implementation, auto (cuBLAS when it loads, else PTX), cublas or ptx (env GPUJOBS_GEMM)")
	cmd.Flags().StringVar(&o.CuBLAS, "cublas", config.Env("GPUJOBS_CUBLAS", ""), "gpu: cuBLAS library to load instead of searching libcublas.so.13/.12/.11 (env GPUJOBS_CUBLAS)")
	cli.Main("worker-gpu", cmd)
}

// openGPU opens every GPU of the node (or CUDA_VISIBLE_DEVICES') with the built-in kinds' GPU
// implementations.
func openGPU(o cuda.Options, logger *zap.Logger) (activities.Runner, func(), error) {
	r, err := cuda.NewRunner(o)
	if err != nil {
		return nil, nil, err
	}
	impl, detail := r.GEMM()
	for _, d := range r.Devices() {
		logger.Info("GPU ready", zap.Int("gpu", d.Index), zap.String("name", d.Name),
			zap.String("compute_capability", d.ComputeCapability), zap.Int64("memory", d.Memory), zap.Int("sms", d.SMs))
	}
	logger.Info("SGEMM", zap.String("gemm", impl), zap.String("detail", detail))
	return gpuRunner{r}, func() { _ = r.Close() }, nil
}

// gpuRunner adapts cuda.Runner to activities.Runner. The device that ran a job is in its
// Output.Device; Device describes them all for the worker's log and for jobs that report none.
type gpuRunner struct{ *cuda.Runner }

func (g gpuRunner) Device() jobs.DeviceInfo {
	d := g.Devices()[0]
	return jobs.DeviceInfo{
		WorkerType:        jobs.WorkerTypeGPU,
		Name:              g.Name(),
		ComputeCapability: d.ComputeCapability,
		Memory:            d.Memory,
	}
}
