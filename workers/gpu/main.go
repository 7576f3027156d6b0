//go:build cuda

// Command worker-gpu is the gpujobs worker for GPU nodes: the gpu role runs jobs' kernels on this
// machine's GPUs (package kernels/cuda), small jobs sharing a GPU while their memory estimates fit
// (--jobs-per-gpu). When a GPU becomes unusable for the process (a CUDA error that CUDA says only
// a restart recovers from), it stops polling, lets the running jobs end and exits non-zero, so
// that its supervisor restarts it. It is the worker
// command with a CUDA runner; the plain worker binary stays free of CUDA because the CUDA
// bindings stop any process that starts without a GPU. Here that is intended: on a machine
// without one, worker-gpu stops at once with a single line (see kernels/cuda/probe).
package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/kernels/cuda"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
	"github.com/gpujobs/gpujobs/workers"
)

func main() {
	var o cuda.Options
	var cmd *cobra.Command
	cmd = workers.Command(workers.Config{
		Name:        "worker-gpu",
		DefaultRole: workers.RoleGPU,
		GPU: func(logger *zap.Logger) (activities.Runner, func(), error) {
			o.JobsPerGPU, _ = cmd.Flags().GetInt("jobs-per-gpu") // shared with the scheduler role
			return openGPU(o, logger)
		},
	})
	fs := cmd.Flags()
	fs.StringVar(&o.GEMM, "gemm", config.Env("GPUJOBS_GEMM", cuda.GEMMAuto), "gpu: SGEMM implementation, auto (cuBLAS when it loads, else PTX), cublas or ptx (env GPUJOBS_GEMM)")
	fs.StringVar(&o.CuBLAS, "cublas", config.Env("GPUJOBS_CUBLAS", ""), "gpu: cuBLAS library to load instead of searching libcublas.so.13/.12/.11 (env GPUJOBS_CUBLAS)")
	fs.StringVar(&o.KernelDir, "kernel-dir", config.Env(ptx.KernelDirEnv, ""), "gpu: load the kernels' NAME.fatbin/NAME.ptx files from this directory instead of the embedded ones (env "+ptx.KernelDirEnv+")")
	fs.StringVar(&o.NVML, "nvml", config.Env("GPUJOBS_NVML", ""), "gpu: NVML library for the results' utilisation and memory telemetry, a file or soname, or off (env GPUJOBS_NVML; default libnvidia-ml.so.1)")
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
	on, why := r.Telemetry()
	logger.Info("telemetry", zap.Bool("nvml", on), zap.String("detail", why))
	logger.Info("kernels", zap.String("from", r.Kernels()), zap.Int("jobs_per_gpu", r.JobsPerGPU()))
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

// Admit reserves nothing: the GPU runner compares each job with its device's free memory when
// it starts it (a job that does not fit now waits as ResourceBusy).
func (gpuRunner) Admit(string, jobs.Work) (func() error, error) {
	return func() error { return nil }, nil
}

// GPUs lists the node's GPUs, which command jobs get from the worker's book of devices.
func (g gpuRunner) GPUs() []jobs.DeviceInfo {
	var out []jobs.DeviceInfo
	for _, d := range g.Devices() {
		out = append(out, jobs.DeviceInfo{WorkerType: jobs.WorkerTypeGPU, Name: d.Name, Index: d.Index, ComputeCapability: d.ComputeCapability, Memory: d.Memory})
	}
	return out
}
