//go:build cuda

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/cuda"
	"github.com/gpujobs/gpujobs/kernels/cuda/pool"
)

// Tolerances. GEMM and convolution outputs are compared as max |gpu − cpu| / rms(cpu): both
// sides sum in FP32 in different orders, so an element may differ by a few ulps of the typical
// output; a wrong kernel misses by O(1). TF32 keeps 10 mantissa bits of each input, so its errors
// are about 2⁻¹¹·√K times the inputs' scale. Vector addition is exact. Training runs take the
// same steps from the same start, so the losses agree closely; the accuracy within two points.
const (
	tolFP32        = 1e-4
	tolTF32        = 1e-2
	tolInitialLoss = 1e-4 // relative
	tolFinalLoss   = 2e-2 // relative
	tolAccuracy    = 0.02 // absolute
)

const tolerances = "tolerances: GEMM and conv max|gpu-cpu|/rms(cpu) <= 1e-4 (fp32), 1e-2 (tf32); vector addition exact; " +
	"neural_network initial loss 1e-4 and final loss 2e-2 relative, accuracy +-0.02, and the loss must fall below 0.6x the initial"

type row struct {
	job, size, impl string
	gpu, cpu        float64
	unit            string
	err, tol        float64
	ok              bool
	note            string
}

func runCheck(ctx context.Context, w io.Writer, r *cuda.Runner, o options) error {
	impls := []string{cuda.GEMMPTX}
	if impl, _ := r.GEMM(); impl == cuda.GEMMCuBLAS {
		impls = append(impls, cuda.GEMMCuBLAS)
	}
	reg := builtin.Kinds()
	def := func(kind string) jobs.Params {
		p, err := reg.Decode(kind, nil)
		if err != nil {
			panic(err) // the registry's defaults are valid; a test covers it
		}
		return p
	}
	var rows []row
	add := func(rs ...row) { rows = append(rows, rs...) }

	for _, p := range []*builtin.MatrixMultiply{{Size: 129, Iterations: 3, Precision: "fp32", Seed: 7}, def(builtin.MatrixMultiplyKind).(*builtin.MatrixMultiply)} {
		want, cpuRate := cpuGemm(p)
		for _, impl := range impls {
			add(checkGemm(ctx, r, p, impl, "fp32", want, cpuRate))
			if impl == cuda.GEMMCuBLAS {
				add(checkGemm(ctx, r, p, impl, "tf32", want, cpuRate))
			}
		}
	}
	for _, p := range []*builtin.VectorAddition{{Size: 100_003, Iterations: 3, Seed: 7}, def(builtin.VectorAdditionKind).(*builtin.VectorAddition)} {
		add(checkVector(ctx, r, p))
	}
	for _, p := range []*builtin.ImageProcessing{
		{BatchSize: 2, ImageSize: 9, Channels: 3, Filters: 4, KernelSize: 3, Iterations: 2, Seed: 7},
		{BatchSize: 3, ImageSize: 17, Channels: 2, Filters: 70, KernelSize: 5, Iterations: 2, Seed: 7},
		def(builtin.ImageProcessingKind).(*builtin.ImageProcessing),
	} {
		add(checkConv(ctx, r, p))
	}
	for _, p := range []*builtin.NeuralNetwork{
		{Epochs: 8, BatchSize: 32, InputSize: 20, HiddenSize: 16, OutputSize: 4, Samples: 250, LearningRate: 1e-2, Seed: 7},
		def(builtin.NeuralNetworkKind).(*builtin.NeuralNetwork),
	} {
		cpu, err := kernels.NeuralNetwork(ctx, p, func(jobs.Progress) {})
		for _, impl := range impls {
			if err != nil {
				add(row{job: p.Kind(), size: nnSize(p), impl: impl, note: "CPU run failed: " + err.Error()})
				continue
			}
			add(checkMLP(ctx, r, p, impl, cpu))
		}
	}
	if !o.noFault {
		add(checkFaults(ctx, r, o)...)
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "job\tsize\timpl\tGPU rate\tCPU rate\tunit\terror\ttolerance\tresult\t")
	failed := 0
	for _, r := range rows {
		result := "ok"
		if !r.ok {
			result = "FAIL"
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.job, r.size, r.impl, num(r.gpu), num(r.cpu), r.unit, sci(r.err), sci(r.tol), result, r.note)
	}
	tw.Flush()
	fmt.Fprintln(w, tolerances)
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed: %w", failed, len(rows), errMismatch)
	}
	fmt.Fprintf(w, "all %d checks passed\n", len(rows))
	return nil
}

func num(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func sci(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return fmt.Sprintf("%.1e", v)
}

func nothing(jobs.Progress) {}

func cpuGemm(p *builtin.MatrixMultiply) ([]float32, float64) {
	a, b := p.Inputs()
	c := make([]float32, p.Size*p.Size)
	start := time.Now()
	kernels.Sgemm(p.Size, a, b, c)
	n := float64(p.Size)
	return c, jobs.Rate(2*n*n*n, time.Since(start)) / 1e9
}

func checkGemm(ctx context.Context, r *cuda.Runner, p *builtin.MatrixMultiply, impl, precision string, want []float32, cpuRate float64) row {
	q := *p
	q.Precision = precision
	res := row{job: q.Kind(), size: fmt.Sprint(q.Size), impl: impl + " " + precision, cpu: cpuRate, unit: "GFLOP/s", tol: tolFP32}
	if precision == "tf32" {
		res.tol = tolTF32
	}
	var got []float32
	out, err := r.RunWith(ctx, &q, nothing, cuda.RunOptions{GEMM: impl, Result: &got})
	if err != nil {
		res.note = err.Error()
		return res
	}
	res.gpu = out.Metrics["gflops"]
	res.err = kernels.MaxRelErr(got, want, rms(want))
	res.ok = res.err <= res.tol && out.Precision == precision
	if out.Precision != precision {
		res.note = "ran " + out.Precision
	}
	return res
}

func checkVector(ctx context.Context, r *cuda.Runner, p *builtin.VectorAddition) row {
	res := row{job: p.Kind(), size: fmt.Sprint(p.Size), impl: "ptx", unit: "GB/s"}
	a, b := p.Inputs()
	want := make([]float32, len(a))
	start := time.Now()
	kernels.AddVectors(a, b, want)
	res.cpu = jobs.Rate(12*float64(p.Size), time.Since(start)) / 1e9
	var got []float32
	out, err := r.RunWith(ctx, p, nothing, cuda.RunOptions{Result: &got})
	if err != nil {
		res.note = err.Error()
		return res
	}
	res.gpu = out.Metrics["gbps"]
	for i := range want {
		res.err = math.Max(res.err, math.Abs(float64(got[i])-float64(want[i])))
	}
	res.ok = res.err == 0
	return res
}

func checkConv(ctx context.Context, r *cuda.Runner, p *builtin.ImageProcessing) row {
	s := p.Shape()
	res := row{job: p.Kind(), size: fmt.Sprintf("%dx%dx%dx%d k%d f%d", s.N, s.C, s.H, s.W, s.K, s.F), impl: "ptx", unit: "GFLOP/s", tol: tolFP32}
	in, w := p.Inputs()
	want := make([]float32, s.OutputLen())
	start := time.Now()
	kernels.Conv2D(s, in, w, want, make([]float32, s.C*s.K*s.K*s.H*s.W))
	res.cpu = jobs.Rate(s.FLOPs(), time.Since(start)) / 1e9
	var got []float32
	out, err := r.RunWith(ctx, p, nothing, cuda.RunOptions{Result: &got})
	if err != nil {
		res.note = err.Error()
		return res
	}
	res.gpu = out.Metrics["gflops"]
	res.err = kernels.MaxRelErr(got, want, rms(want))
	res.ok = res.err <= res.tol
	res.note = out.Kernel
	return res
}

func nnSize(p *builtin.NeuralNetwork) string {
	return fmt.Sprintf("%d-%d-%d b%d x%d e%d", p.InputSize, p.HiddenSize, p.OutputSize, p.BatchSize, p.Samples, p.Epochs)
}

func checkMLP(ctx context.Context, r *cuda.Runner, p *builtin.NeuralNetwork, impl string, cpu jobs.Output) row {
	res := row{job: p.Kind(), size: nnSize(p), impl: impl, cpu: cpu.Metrics["samples_per_sec"], unit: "samples/s", tol: tolFinalLoss}
	out, err := r.RunWith(ctx, p, nothing, cuda.RunOptions{GEMM: impl})
	if err != nil {
		res.note = err.Error()
		return res
	}
	g, c := out.Metrics, cpu.Metrics
	res.gpu = g["samples_per_sec"]
	res.err = math.Abs(g["final_loss"]-c["final_loss"]) / c["final_loss"]
	initErr := math.Abs(g["initial_loss"]-c["initial_loss"]) / c["initial_loss"]
	accErr := math.Abs(g["accuracy"] - c["accuracy"])
	res.note = fmt.Sprintf("loss %.4f -> %.4f (cpu %.4f -> %.4f), accuracy %.3f (cpu %.3f)",
		g["initial_loss"], g["final_loss"], c["initial_loss"], c["final_loss"], g["accuracy"], c["accuracy"])
	var bad []string
	if !(initErr <= tolInitialLoss) {
		bad = append(bad, fmt.Sprintf("initial loss off by %.1e", initErr))
	}
	if !(res.err <= tolFinalLoss) {
		bad = append(bad, "final loss differs")
	}
	if !(accErr <= tolAccuracy) {
		bad = append(bad, fmt.Sprintf("accuracy off by %.3f", accErr))
	}
	if !(g["final_loss"] < 0.6*g["initial_loss"]) {
		bad = append(bad, "loss did not fall")
	}
	if len(bad) > 0 {
		res.note = strings.Join(bad, "; ") + ": " + res.note
	}
	res.ok = len(bad) == 0
	return res
}

// checkFaults shows the safety rules on the device, the gravest fault last: a job that can never
// fit is refused before allocating; an out-of-memory error fails its job and the next job runs;
// an illegal address, after which CUDA says only a new process can use the device, is provoked
// in a child process (gpucheck --fault-child), which must mark the device dead, refuse the next
// job retryably and say it would exit, after which this process, as a restarted worker would,
// runs jobs normally; and a device-side assert, whose context a reset recovers in-process, is
// followed by a job that must run after the reset.
func checkFaults(ctx context.Context, r *cuda.Runner, o options) []row {
	var rows []row
	mem := r.Devices()[0].Memory
	fit := row{job: "safety", size: "2x memory", impl: "fits"}
	if err := r.Fits(jobs.Work{MemBytes: 2 * mem}); err != nil && strings.Contains(err.Error(), "can hold") {
		fit.ok, fit.note = true, err.Error()
	} else {
		fit.note = fmt.Sprintf("Fits returned %v, want a limit", err)
	}
	rows = append(rows, fit)

	res := row{job: "safety", size: "-", impl: cuda.FaultOutOfMemory}
	err := r.ProvokeFault(ctx, cuda.FaultOutOfMemory)
	res.ok, res.note = faultNamed(err, cuda.FaultOutOfMemory)
	rows = append(rows, afterFault(ctx, r, res))

	rows = append(rows, checkFaultChild(ctx, r, o))

	res = row{job: "recovery", size: "in-process", impl: cuda.FaultAssert}
	err = r.ProvokeFault(ctx, cuda.FaultAssert)
	res.ok, res.note = faultNamed(err, cuda.FaultAssert)
	if st := r.Health()[0]; res.ok && st.State != pool.Broken {
		res.ok, res.note = false, fmt.Sprintf("%s; device %v after it, want broken", res.note, st.State)
	}
	res = afterFault(ctx, r, res)
	if st := r.Health()[0]; st.State != pool.Healthy {
		res.ok, res.note = false, fmt.Sprintf("%s; device %v after the reset (%v)", res.note, st.State, st.Cause)
	} else {
		res.note += "; context reset, device healthy"
	}
	return append(rows, res)
}

// faultNamed checks that the fault failed with its CUDA error.
func faultNamed(err error, fault string) (bool, string) {
	if err == nil || !strings.Contains(err.Error(), cuda.FaultError[fault]) {
		return false, fmt.Sprintf("error %v, want %s", err, cuda.FaultError[fault])
	}
	return true, cuda.FaultError[fault]
}

// afterFault runs the next jobs, with every SGEMM this runner has: they must run and be right.
func afterFault(ctx context.Context, r *cuda.Runner, res row) row {
	p := &builtin.MatrixMultiply{Size: 256, Iterations: 2, Precision: "fp32", Seed: 3}
	want, _ := cpuGemm(p)
	var after []string
	for _, impl := range []string{cuda.GEMMPTX, cuda.GEMMCuBLAS} {
		if i, _ := r.GEMM(); impl == cuda.GEMMCuBLAS && i != cuda.GEMMCuBLAS {
			continue
		}
		g := checkGemm(ctx, r, p, impl, "fp32", want, 0)
		res.ok = res.ok && g.ok
		after = append(after, fmt.Sprintf("then %s sgemm ok=%v%s", impl, g.ok, prefixed(g.note)))
	}
	res.note += "; " + strings.Join(after, "; ")
	return res
}

func prefixed(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// childReport is what gpucheck --fault-child prints: what the fault did to a runner.
type childReport struct {
	Fault    string `json:"fault"`
	Error    string `json:"error"`
	Named    bool   `json:"named"`    // the error names the fault's CUDA error
	Dead     bool   `json:"dead"`     // the runner's Dead closed
	DeadErr  string `json:"dead_err"` // and why
	Next     string `json:"next"`     // the next job's error
	Draining bool   `json:"draining"` // which is ErrDraining: retryable, the job runs elsewhere
}

func (c childReport) ok() bool { return c.Named && c.Dead && c.Draining }

// faultChild provokes the fault and reports on stdout; it fails unless the runner behaved as a
// worker must (dead device, Dead closed, next job refused retryably).
func faultChild(ctx context.Context, w io.Writer, r *cuda.Runner, fault string) error {
	c := childReport{Fault: fault}
	err := r.ProvokeFault(ctx, fault)
	if err != nil {
		c.Error = err.Error()
	}
	c.Named, _ = faultNamed(err, fault)
	select {
	case <-r.Dead():
		c.Dead = true
		c.DeadErr = r.DeadErr().Error()
	default:
	}
	_, err = r.Run(ctx, &builtin.MatrixMultiply{Size: 8, Iterations: 1, Precision: "fp32", Seed: 1}, nothing)
	if err != nil {
		c.Next = err.Error()
	}
	c.Draining = errors.Is(err, pool.ErrDraining)
	if err := json.NewEncoder(w).Encode(c); err != nil {
		return err
	}
	if !c.ok() {
		return fmt.Errorf("the runner did not take the %s fault as a dead device", fault)
	}
	return nil
}

// checkFaultChild runs gpucheck --fault-child=illegal-address and, when the child saw what it
// should, shows that a fresh process (this one) uses the device normally.
func checkFaultChild(ctx context.Context, r *cuda.Runner, o options) row {
	res := row{job: "recovery", size: "restart", impl: cuda.FaultIllegalAddress}
	self, err := os.Executable()
	if err != nil {
		res.note = err.Error()
		return res
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, self, "--fault-child", cuda.FaultIllegalAddress, "--device", strconv.Itoa(o.device), "--gemm", o.gemm)
	if o.cublas != "" {
		cmd.Args = append(cmd.Args, "--cublas", o.cublas)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var c childReport
	if jerr := json.Unmarshal(out, &c); jerr != nil {
		res.note = fmt.Sprintf("child process: %v, output %q, stderr %q", err, out, lastLine(stderr.String()))
		return res
	}
	res.ok = c.ok() && err == nil
	res.note = fmt.Sprintf("child process: %s; device dead=%v; next job refused retryably=%v (%s); child exit %v",
		firstOf(c.Error, "no error"), c.Dead, c.Draining, firstOf(c.Next, "it ran"), exitStatus(err))
	if !res.ok {
		return res
	}
	res.note += "; in a fresh process (this one):"
	return afterFault(ctx, r, res)
}

func firstOf(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strconv.Itoa(ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "0"
}

func rms(s []float32) float64 {
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	if len(s) == 0 || sum == 0 {
		return 1
	}
	return math.Sqrt(sum / float64(len(s)))
}
