//go:build cuda

package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/kernels/cuda"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

type options struct {
	device     int
	gemm       string
	cublas     string
	kernelDir  string
	nvml       string
	bench      bool
	impl       string
	json       bool
	repeat     int
	noFault    bool
	faultChild string
}

// errMismatch is returned when a check fails; the table above it says which.
var errMismatch = errors.New("the GPU results do not match the CPU's (see the table)")

func newCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "gpucheck",
		Short: "Check the GPU kernels against the CPU ones, or benchmark them (--bench)",
		Long: `gpucheck runs every job type on one GPU and on the CPU with the same seeded inputs and
compares the results (tolerances are printed with the table); it exits 1 on any mismatch.
With --bench it runs the benchmark cases instead and prints their rates (--json for
scripts/torch_bench.py, which runs the same cases in PyTorch).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.impl != "" && o.impl != cuda.GEMMPTX && o.impl != cuda.GEMMCuBLAS {
				return fmt.Errorf("--impl %q: use ptx or cublas", o.impl)
			}
			r, err := cuda.NewRunner(cuda.Options{GEMM: o.gemm, CuBLAS: o.cublas, Devices: []int{o.device}, KernelDir: o.kernelDir, NVML: o.nvml})
			if err != nil {
				return err
			}
			if o.faultChild != "" {
				// The fault leaves the device unusable for this process: no Close.
				return faultChild(cmd.Context(), cmd.OutOrStdout(), r, o.faultChild)
			}
			defer r.Close()
			describe(cmd.ErrOrStderr(), r)
			if o.bench {
				return runBench(cmd.Context(), cmd.OutOrStdout(), r, o)
			}
			return runCheck(cmd.Context(), cmd.OutOrStdout(), r, o)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.device, "device", config.EnvInt("GPUJOBS_DEVICE", 0), "GPU ordinal to check (env GPUJOBS_DEVICE)")
	fs.StringVar(&o.gemm, "gemm", config.Env("GPUJOBS_GEMM", cuda.GEMMAuto), "SGEMM: auto (cuBLAS when it loads), cublas or ptx; checks and benchmarks run the PTX SGEMM as well (env GPUJOBS_GEMM)")
	fs.StringVar(&o.cublas, "cublas", config.Env("GPUJOBS_CUBLAS", ""), "cuBLAS library to load instead of searching libcublas.so.13/.12/.11 (env GPUJOBS_CUBLAS)")
	fs.BoolVar(&o.bench, "bench", false, "run the benchmark cases instead of the checks")
	fs.BoolVar(&o.json, "json", false, "with --bench: print JSON lines instead of a table")
	fs.StringVar(&o.impl, "impl", "", "with --bench: only the cases of this SGEMM implementation, ptx or cublas (default all)")
	fs.IntVar(&o.repeat, "repeat", 3, "with --bench: runs per case, the best counts")
	fs.StringVar(&o.kernelDir, "kernel-dir", config.Env(ptx.KernelDirEnv, ""), "load the kernels' .fatbin/.ptx files from this directory instead of the embedded ones (env "+ptx.KernelDirEnv+")")
	fs.StringVar(&o.nvml, "nvml", config.Env("GPUJOBS_NVML", ""), "NVML library for utilisation and memory telemetry: a file or soname, or off (env GPUJOBS_NVML; default libnvidia-ml.so.1)")
	fs.BoolVar(&o.noFault, "no-faults", false, "skip provoking CUDA errors (out of memory, illegal address in a child process, device-side assert)")
	fs.StringVar(&o.faultChild, "fault-child", "", "provoke this fault, report what the runner did as JSON and exit (used by the check itself)")
	_ = fs.MarkHidden("fault-child")
	return cmd
}

func describe(w io.Writer, r *cuda.Runner) {
	for _, d := range r.Devices() {
		fmt.Fprintf(w, "GPU %d: %s, compute capability %s, %.1f GiB, %d SMs\n", d.Index, d.Name, d.ComputeCapability, float64(d.Memory)/(1<<30), d.SMs)
	}
	impl, detail := r.GEMM()
	fmt.Fprintf(w, "SGEMM: %s (%s)\n", impl, detail)
	on, detail := r.Telemetry()
	fmt.Fprintf(w, "NVML telemetry: %v (%s)\n", on, detail)
	fmt.Fprintf(w, "kernels: %s; jobs per GPU: %d\n", r.Kernels(), r.JobsPerGPU())
}
