package monitor

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// fixtureJob is one job type and params with typical times on the 2-core EPYC CPU and an H100.
type fixtureJob struct {
	jobType  string
	params   string
	cpu, gpu float64 // seconds
	metric   string
	work     float64 // GFLOP or GB per run, for the rate
}

var fixtureJobs = []fixtureJob{
	{"matrix_multiply", `{"size":1024,"iterations":10,"precision":"float32","seed":1}`, 0.118, 0.0011, "gflops", 21.5},
	{"matrix_multiply", `{"size":4096,"iterations":5,"precision":"float32","seed":1}`, 3.71, 0.0142, "gflops", 687},
	{"matrix_multiply", `{"size":256,"iterations":10,"precision":"float32","seed":1}`, 0.0021, 0.00031, "gflops", 0.34},
	{"vector_addition", `{"size":10000000,"iterations":20,"seed":1}`, 0.271, 0.00205, "gbps", 4.8},
	{"neural_network", `{"epochs":3,"batch_size":64,"input_size":784,"hidden_size":256,"output_size":10,"samples":6400,"learning_rate":0.001,"seed":1}`, 0.73, 0.061, "samples_per_sec", 19200},
	{"image_processing", `{"batch_size":8,"image_size":224,"channels":3,"filters":64,"kernel_size":3,"iterations":2,"seed":1}`, 0.342, 0.0049, "gflops", 27.7},
}

// fixtureResults makes n results of the four job types, as a cluster with GPU and CPU workers
// produces them: most on a GPU, some on a CPU by request, some fallbacks, a few failures. The
// same seed gives the same results; IDs are job-<12 hex>.
func fixtureResults(n int, seed uint64, start time.Time) []jobs.Result {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]jobs.Result, 0, n)
	t := start
	for i := range n {
		j := fixtureJobs[rng.IntN(len(fixtureJobs))]
		r := jobs.Result{
			JobID:      fmt.Sprintf("job-%012x", seed<<32|uint64(i)),
			JobType:    j.jobType,
			Params:     json.RawMessage(j.params),
			Status:     jobs.StatusCompleted,
			Priority:   3,
			Attempt:    1,
			SubmitTime: t,
		}
		switch p := rng.Float64(); {
		case p < 0.55:
			r.WorkerType, r.WorkerID, r.Device, r.RequestedDevice = "gpu", "gpu-node-1", "NVIDIA H100 80GB HBM3", "gpu"
			r.ProcessingTime = j.gpu * (0.9 + 0.2*rng.Float64())
			r.GEMM, r.ComputeCapability, r.DeviceMemory = "cublas", "9.0", 85520809984
			if i%5 != 0 { // NVML telemetry, made up from i so the random sequence stays as it was
				mean, peak := float64(30+i%60), float64(min(100, 50+i%60))
				r.GPUUtilizationMean, r.GPUUtilizationPeak, r.GPUMemoryPeak = &mean, &peak, int64(2+i%8)<<30
			}
		case p < 0.85:
			r.WorkerType, r.WorkerID, r.Device, r.RequestedDevice = "cpu", "cpu-node-1", "AMD EPYC 9B14, 2 threads", "cpu"
			r.ProcessingTime = j.cpu * (0.9 + 0.2*rng.Float64())
			r.BLAS, r.Threads = "openblas", 2
		default:
			r.WorkerType, r.WorkerID, r.Device, r.RequestedDevice = "cpu", "cpu-node-2", "AMD EPYC 9B14, 2 threads", "gpu"
			r.ProcessingTime = j.cpu * (0.9 + 0.2*rng.Float64())
			r.BLAS, r.Threads = "openblas", 2
			r.Fallback = "no GPU worker polling gpu_queue"
		}
		r.Metrics = map[string]float64{j.metric: j.work / r.ProcessingTime}
		if rng.Float64() < 0.04 {
			r.Status, r.Metrics, r.ProcessingTime = jobs.StatusFailed, nil, 0
			if rng.IntN(2) == 0 {
				r.ErrorType, r.Error = jobs.ErrInvalidParams, j.jobType+": invalid size: -1 is out of range, allowed 1..32768"
				r.WorkerType, r.WorkerID, r.Device, r.Fallback = "", "", "", ""
			} else {
				r.ErrorType, r.Error = jobs.ErrResourceExhausted, "needs 12.9 GB, the worker has 8 GB"
			}
		}
		r.QueueTime = 0.02 + 0.05*rng.Float64()
		r.SetupTime = 0.01 + 0.02*rng.Float64()
		r.StartTime = t.Add(time.Duration(r.QueueTime * float64(time.Second)))
		r.EndTime = r.StartTime.Add(time.Duration((r.SetupTime + r.ProcessingTime) * float64(time.Second)))
		out = append(out, r)
		t = t.Add(time.Duration(20+rng.IntN(200)) * time.Millisecond)
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
