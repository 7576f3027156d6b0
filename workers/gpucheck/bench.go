//go:build cuda

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels/cuda"
)

// A benchCase is one job that scripts/torch_bench.py repeats in PyTorch on the same card. Work
// is the numerator of the rate (bytes, FLOPs or samples, from the job's Work estimate), so the
// PyTorch rate, work / its time, is defined exactly like ours.
type benchCase struct {
	Case      string          `json:"case"`
	Job       string          `json:"job"`
	Params    json.RawMessage `json:"params"`
	Impl      string          `json:"impl"`      // ptx or cublas
	Precision string          `json:"precision"` // fp32 or tf32
	// Variant marks a run with an optimisation turned off, to measure it ("split-K off"); the
	// targets apply to the plain runs only.
	Variant  string  `json:"variant,omitempty"`
	Rate     float64 `json:"rate"`
	Unit     string  `json:"unit"`
	Work     float64 `json:"work"`  // rate = work / time / scale
	Scale    float64 `json:"scale"` // 1e9 for GB/s and GFLOP/s, 1 for samples/s
	Seconds  float64 `json:"seconds"`
	Device   string  `json:"device"`
	Kernels  string  `json:"kernels,omitempty"` // where the PTX kernels came from
	CuBLAS   string  `json:"cublas,omitempty"`  // the cuBLAS that ran, with its version
	UtilMean float64 `json:"util_mean,omitempty"`
	MemPeak  int64   `json:"mem_peak,omitempty"`
	// Skipped says why the case could not be measured (cuBLAS not loaded): the report shows its
	// target as not checked. It is not a failure; Error is.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// benchCases are the default sizes plus one larger case per job type, where the default is too
// small to fill an H100 (a 1000² GEMM is 2 GFLOP, about 40 µs). The cuBLAS cases are listed
// whether or not cuBLAS loaded; without it they are skipped, saying why.
func benchCases() []benchCase {
	var cs []benchCase
	add := func(name string, p jobs.Params, impl, precision string) {
		raw, _ := json.Marshal(p)
		cs = append(cs, benchCase{Case: name, Job: p.Kind(), Params: raw, Impl: impl, Precision: precision})
	}
	noSplit := func(name string, p jobs.Params) {
		add(name, p, cuda.GEMMPTX, "fp32")
		cs[len(cs)-1].Variant = variantNoSplitK
	}
	add("vector 10M", &builtin.VectorAddition{Size: 10_000_000, Iterations: 200, Seed: 42}, cuda.GEMMPTX, "fp32")
	add("vector 128M", &builtin.VectorAddition{Size: 1 << 27, Iterations: 20, Seed: 42}, cuda.GEMMPTX, "fp32")
	for _, n := range []int{1000, 4096} {
		iters := 200
		if n > 1000 {
			iters = 20
		}
		add(fmt.Sprintf("matmul %d", n), &builtin.MatrixMultiply{Size: n, Iterations: iters, Precision: "fp32", Seed: 42}, cuda.GEMMPTX, "fp32")
		if n == 1000 { // the product that split-K is for
			noSplit(fmt.Sprintf("matmul %d", n), &builtin.MatrixMultiply{Size: n, Iterations: iters, Precision: "fp32", Seed: 42})
		}
		add(fmt.Sprintf("matmul %d", n), &builtin.MatrixMultiply{Size: n, Iterations: iters, Precision: "fp32", Seed: 42}, cuda.GEMMCuBLAS, "fp32")
		add(fmt.Sprintf("matmul %d", n), &builtin.MatrixMultiply{Size: n, Iterations: iters, Precision: "tf32", Seed: 42}, cuda.GEMMCuBLAS, "tf32")
	}
	add("conv 32x3x224² k3 f64", &builtin.ImageProcessing{BatchSize: 32, ImageSize: 224, Channels: 3, Filters: 64, KernelSize: 3, Iterations: 20, Seed: 42}, cuda.GEMMPTX, "fp32")
	add("conv 32x64x56² k3 f64", &builtin.ImageProcessing{BatchSize: 32, ImageSize: 56, Channels: 64, Filters: 64, KernelSize: 3, Iterations: 20, Seed: 42}, cuda.GEMMPTX, "fp32")
	for _, bs := range []int{64, 256} {
		p := &builtin.NeuralNetwork{Epochs: 5, BatchSize: bs, InputSize: 784, HiddenSize: 256, OutputSize: 10, Samples: bs * 100, LearningRate: 1e-3, Seed: 42}
		name := fmt.Sprintf("mlp 784-256-10 b%d", bs)
		add(name, p, cuda.GEMMPTX, "fp32")
		if bs == 64 {
			noSplit(name, p)
		}
		add(name, p, cuda.GEMMCuBLAS, "fp32")
	}
	return cs
}

// variantNoSplitK is the bench variant that runs the PTX SGEMM without split-K.
const variantNoSplitK = "split-K off"

// runBench runs every case and prints it; it fails when a case failed (a skipped one is not a
// failure), after printing them all.
func runBench(ctx context.Context, w io.Writer, r *cuda.Runner, o options) error {
	impl, why := r.GEMM()
	cases := benchCases()
	reg := builtin.Kinds()
	device := r.Devices()[0].Name
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if !o.json {
		fmt.Fprintln(tw, "case\timpl\tprecision\tvariant\trate\tunit\tseconds\t")
	}
	enc := json.NewEncoder(w)
	failed := 0
	for _, c := range cases {
		if o.impl != "" && c.Impl != o.impl {
			continue
		}
		c.Device = device
		c.Kernels = r.Kernels()
		p, err := reg.Decode(c.Job, c.Params)
		if err != nil {
			return err
		}
		switch {
		case c.Impl == cuda.GEMMCuBLAS && impl != cuda.GEMMCuBLAS:
			c.Skipped = "cuBLAS not loaded: " + why
		default:
			if c.Impl == cuda.GEMMCuBLAS {
				c.CuBLAS = why
			}
			measure(ctx, r, p, &c, max(o.repeat, 1))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.Error != "" {
			failed++
		}
		if o.json {
			if err := enc.Encode(c); err != nil {
				return err
			}
			continue
		}
		rate := fmt.Sprintf("%.1f", c.Rate)
		switch {
		case c.Error != "":
			rate = "error: " + c.Error
		case c.Skipped != "":
			rate = "not checked: " + c.Skipped
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.4f\t\n", c.Case, c.Impl, c.Precision, c.Variant, rate, c.Unit, c.Seconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d benchmark cases failed", failed, len(cases))
	}
	return nil
}

// measure runs the case repeat times and keeps the best rate: the first run of a shape also pays
// for cuBLAS's kernel selection and the caches' warm-up, which PyTorch's side skips as well.
func measure(ctx context.Context, r *cuda.Runner, p jobs.Params, c *benchCase, repeat int) {
	w := p.Work()
	metric := map[string]string{builtin.VectorAdditionKind: "gbps", builtin.NeuralNetworkKind: "samples_per_sec"}[p.Kind()]
	switch p.Kind() {
	case builtin.VectorAdditionKind:
		c.Unit, c.Work, c.Scale = "GB/s", w.Bytes, 1e9
	case builtin.NeuralNetworkKind:
		nn := p.(*builtin.NeuralNetwork)
		c.Unit, c.Work, c.Scale = "samples/s", float64(nn.Samples)*float64(nn.Epochs), 1
	default:
		metric = "gflops"
		c.Unit, c.Work, c.Scale = "GFLOP/s", w.FLOPs, 1e9
	}
	for i := 0; i < repeat; i++ {
		out, err := r.RunWith(ctx, p, nothing, cuda.RunOptions{GEMM: c.Impl, NoSplitK: c.Variant == variantNoSplitK})
		if err != nil {
			c.Error = err.Error()
			return
		}
		if got := out.Metrics[metric]; got > c.Rate {
			c.Rate, c.Seconds = got, out.ProcessingTime.Seconds()
			if t := out.Telemetry; t != nil {
				c.UtilMean, c.MemPeak = t.UtilizationMean, t.MemoryPeak
			}
		}
		if !(out.Metrics[metric] > 0) {
			c.Error = fmt.Sprintf("%s = %v", metric, out.Metrics[metric])
			return
		}
		if pr := out.Precision; pr != "" && pr != c.Precision {
			c.Error = "ran " + pr
		}
	}
}
