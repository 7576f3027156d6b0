package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// The benchmarks run against the same dev server as the e2e tests (make bench sets
// GPUJOBS_E2E=1) and report ratios against a baseline measured in the same run.

const (
	floorQueue         = "bench_floor"
	floorActivityQueue = "bench_floor_activities"
)

// FloorWorkflow is the baseline: one workflow, one no-op activity, nothing else. The activity
// runs on the workflow's own task queue and worker, so Temporal hands it over eagerly in the
// workflow task's reply — the best case any Temporal workflow gets.
func FloorWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, NoopActivity).Get(ctx, nil)
}

// CrossQueueFloorWorkflow is the same with the activity on another task queue, as every job of
// gpujobs has (workflows on job_queue, kernels on cpu_queue or gpu_queue): no eager hand-over,
// one matching round trip more.
func CrossQueueFloorWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, TaskQueue: floorActivityQueue})
	return workflow.ExecuteActivity(ctx, NoopActivity).Get(ctx, nil)
}

func NoopActivity(context.Context) error { return nil }

type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

// measure runs n jobs one at a time (latency) and then n at once (throughput).
func measure(b *testing.B, n int, run func() error) (lat latencies, perSec float64) {
	b.Helper()
	for range n {
		start := time.Now()
		if err := run(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return lat, float64(n) / time.Since(start).Seconds()
}

// BenchmarkPipelineLatency: submit-to-result latency and throughput of 200 tiny jobs through
// gpujobs (scheduler and CPU worker processes, RabbitMQ publish with confirms) against a bare
// workflow with one no-op activity on the same dev server (the floor).
func BenchmarkPipelineLatency(b *testing.B) {
	e := env
	const n = 200
	c := e.dial(b)
	w := worker.New(c, floorQueue, worker.Options{})
	w.RegisterWorkflow(FloorWorkflow)
	w.RegisterWorkflow(CrossQueueFloorWorkflow)
	w.RegisterActivity(NoopActivity)
	wa := worker.New(c, floorActivityQueue, worker.Options{})
	wa.RegisterActivity(NoopActivity)
	for _, w := range []worker.Worker{w, wa} {
		if err := w.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(w.Stop)
	}
	e.startWorker(b, "scheduler", "sched-bench")
	e.startWorker(b, "cpu", "cpu-bench", "--concurrency", "8")

	bare := func(wf any) func() error {
		return func() error {
			run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: floorQueue}, wf)
			if err != nil {
				return err
			}
			return run.Get(context.Background(), nil)
		}
	}
	floor, crossFloor := bare(FloorWorkflow), bare(CrossQueueFloorWorkflow)
	job := func() error {
		req, err := jobclient.Build(jobclient.Spec{JobType: "vector_addition", Params: `{"size": 1000, "iterations": 1}`, Device: "cpu"}, kernelsRegistry())
		if err != nil {
			return err
		}
		if err := jobclient.Submit(context.Background(), c, req); err != nil {
			return err
		}
		r, err := jobclient.Await(context.Background(), c, req.JobID)
		if err == nil && r.Status != jobs.StatusCompleted {
			err = fmt.Errorf("%s: %s %s", r.JobID, r.Status, r.Error)
		}
		return err
	}
	// Warm both paths up (connections, caches) before measuring.
	for range 10 {
		for _, run := range []func() error{floor, crossFloor, job} {
			if err := run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		fl, fRate := measure(b, n, floor)
		cl, cRate := measure(b, n, crossFloor)
		jl, jRate := measure(b, n, job)
		b.ReportMetric(float64(jl.quantile(0.5).Microseconds())/1e3, "p50-ms")
		b.ReportMetric(float64(jl.quantile(0.95).Microseconds())/1e3, "p95-ms")
		b.ReportMetric(jRate, "jobs/s")
		b.ReportMetric(float64(fl.quantile(0.5).Microseconds())/1e3, "floor-p50-ms")
		b.ReportMetric(float64(fl.quantile(0.95).Microseconds())/1e3, "floor-p95-ms")
		b.ReportMetric(fRate, "floor-wf/s")
		b.ReportMetric(float64(jl.quantile(0.5))/float64(fl.quantile(0.5)), "p50-x-floor")
		b.ReportMetric(float64(jl.quantile(0.95))/float64(fl.quantile(0.95)), "p95-x-floor")
		b.ReportMetric(jRate/fRate, "rate-x-floor")
		b.ReportMetric(float64(cl.quantile(0.5).Microseconds())/1e3, "xq-floor-p50-ms")
		b.ReportMetric(cRate, "xq-floor-wf/s")
		b.ReportMetric(float64(jl.quantile(0.5))/float64(cl.quantile(0.5)), "p50-x-xq-floor")
		b.ReportMetric(float64(jl.quantile(0.95))/float64(cl.quantile(0.95)), "p95-x-xq-floor")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkEstimateError: after a warm-up of 20 jobs per type, the scheduler's estimated_time
// against the measured processing_time, per job type (median of |estimated − actual| / actual).
func BenchmarkEstimateError(b *testing.B) {
	e := env
	c := e.dial(b)
	e.startWorker(b, "scheduler", "sched-est")
	e.startWorker(b, "cpu", "cpu-est")
	rng := rand.New(rand.NewPCG(1, 2))
	// Jobs of 2-100 ms: long enough that the time measures the kernel, not the scheduler's noise
	// (a 0.3 ms job varies by ±30% from run to run on a shared machine), short enough for 120 jobs.
	params := map[string]func() string{
		"matrix_multiply": func() string { return fmt.Sprintf(`{"size": %d, "iterations": 5}`, 300+rng.IntN(600)) },
		"vector_addition": func() string { return fmt.Sprintf(`{"size": %d, "iterations": 20}`, 1_000_000+rng.IntN(4_000_000)) },
		"image_processing": func() string {
			return fmt.Sprintf(`{"batch_size": %d, "image_size": %d, "filters": 32, "iterations": 3}`, 2+rng.IntN(5), 64+rng.IntN(96))
		},
		"neural_network": func() string {
			return fmt.Sprintf(`{"epochs": 2, "batch_size": 64, "samples": %d, "hidden_size": 128}`, 1024+64*rng.IntN(48))
		},
	}
	run := func(kind string) jobs.Result {
		req, err := jobclient.Build(jobclient.Spec{JobType: kind, Params: params[kind](), Device: "cpu"}, kernelsRegistry())
		if err != nil {
			b.Fatal(err)
		}
		if err := jobclient.Submit(context.Background(), c, req); err != nil {
			b.Fatal(err)
		}
		r, err := jobclient.Await(context.Background(), c, req.JobID)
		if err != nil || r.Status != jobs.StatusCompleted {
			b.Fatalf("%s: %v %+v", req.JobID, err, r)
		}
		return r
	}
	kinds := benchKinds()
	for b.Loop() {
		for range 20 { // warm-up, interleaved so every type sees the same machine load
			for _, k := range kinds {
				run(k)
			}
		}
		errs := map[string][]float64{}
		for range 10 {
			for _, k := range kinds {
				r := run(k)
				errs[k] = append(errs[k], math.Abs(r.EstimatedTime-r.ProcessingTime)/r.ProcessingTime)
			}
		}
		for _, k := range kinds {
			s := errs[k]
			sort.Float64s(s)
			b.ReportMetric(100*(s[len(s)/2-1]+s[len(s)/2])/2, k+"-median-err-%")
		}
		b.ReportMetric(0, "ns/op")
	}
}

// benchKinds are the built-in kinds that run kernels (command runs programs).
func benchKinds() []string {
	var out []string
	for _, k := range kernelsRegistry().Names() {
		if k != builtin.CommandKind {
			out = append(out, k)
		}
	}
	return out
}

// BenchmarkPredictionError measures how well a job's predicted end, made when the scheduler
// placed it, matches its real end, on a mixed backlog of 200 jobs submitted at once, with one
// and with two CPU workers: |predicted end − actual end| / (actual end − submit), the median and
// the 90th percentile. The model is warmed up first with 8 jobs of each kind.
func BenchmarkPredictionError(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("%d-workers", workers), func(b *testing.B) {
			e := env.isolated(b, env.rabbitURL)
			b.Cleanup(func() { testutil.DeleteQueues(e.rabbitURL, e.resultQueue) })
			c := e.dial(b)
			e.startWorker(b, "scheduler", "sched-pred")
			for i := range workers {
				e.startWorker(b, "cpu", fmt.Sprintf("cpu-pred-%d", i))
			}
			rng := rand.New(rand.NewPCG(3, 4))
			params := map[string]func() string{
				"matrix_multiply": func() string { return fmt.Sprintf(`{"size": %d, "iterations": 3}`, 200+rng.IntN(400)) },
				"vector_addition": func() string { return fmt.Sprintf(`{"size": %d, "iterations": 10}`, 500_000+rng.IntN(2_000_000)) },
				"image_processing": func() string {
					return fmt.Sprintf(`{"batch_size": %d, "image_size": %d, "filters": 16, "iterations": 2}`, 1+rng.IntN(3), 48+rng.IntN(64))
				},
				"neural_network": func() string {
					return fmt.Sprintf(`{"epochs": 1, "batch_size": 64, "samples": %d, "hidden_size": 64}`, 512+64*rng.IntN(24))
				},
			}
			spec := func(kind string) jobclient.Spec {
				return jobclient.Spec{JobType: kind, Params: params[kind](), Device: "cpu"}
			}
			for b.Loop() {
				var warm []jobclient.Spec
				for range 8 {
					for _, k := range benchKinds() {
						warm = append(warm, spec(k))
					}
				}
				for _, s := range warm { // one at a time: the model learns each kind's rate
					awaitAll(b, c, submitAll(b, c, []jobclient.Spec{s}))
				}
				var backlog []jobclient.Spec
				for range 50 {
					for _, k := range benchKinds() {
						backlog = append(backlog, spec(k))
					}
				}
				rng.Shuffle(len(backlog), func(i, j int) { backlog[i], backlog[j] = backlog[j], backlog[i] })
				results := awaitAll(b, c, submitAll(b, c, backlog))
				var errs, signed []float64
				for _, r := range results {
					if r.Status != jobs.StatusCompleted || r.PredictedEnd.IsZero() {
						b.Fatalf("%s: %s, predicted end %s", r.JobID, r.Status, r.PredictedEnd)
					}
					actual := r.EndTime.Sub(r.SubmitTime).Seconds()
					errs = append(errs, math.Abs(r.PredictedEnd.Sub(r.EndTime).Seconds())/actual)
					signed = append(signed, r.PredictedEnd.Sub(r.EndTime).Seconds()/actual)
				}
				sort.Float64s(signed)
				sort.Float64s(errs)
				b.ReportMetric(100*errs[len(errs)/2], "median-err-%")
				b.ReportMetric(100*errs[len(errs)*9/10], "p90-err-%")
				b.ReportMetric(100*signed[len(signed)/2], "median-bias-%") // < 0: predicted too early
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}
