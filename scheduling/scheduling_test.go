package scheduling

import (
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

func situation(device string, w jobs.Work, cpuTotal, gpuTotal time.Duration, cpuQ, gpuQ QueueState) Situation {
	return Situation{
		Request: jobs.Request{Device: device},
		Work:    w,
		CPU:     DeviceSituation{Queue: cpuQ, Prediction: estimate.Prediction{Processing: cpuTotal, Total: cpuTotal}},
		GPU:     DeviceSituation{Queue: gpuQ, Prediction: estimate.Prediction{Processing: gpuTotal * 8 / 10, Total: gpuTotal}},
	}
}

func TestDecideEveryPolicy(t *testing.T) {
	w := jobs.Work{FLOPs: 1e12}
	one, idle := QueueState{Pollers: 1}, QueueState{}
	tests := []struct {
		name                 string
		in                   Situation
		queue, fallback, why string
	}{
		{"cpu", situation("cpu", w, time.Second, time.Millisecond, one, one), "cpu_queue", "", "device cpu requested"},
		{"cpu without CPU workers still waits for one", situation("cpu", w, time.Second, time.Millisecond, idle, one), "cpu_queue", "", "device cpu requested"},
		{"gpu! without GPU workers waits", situation("gpu!", w, time.Second, time.Millisecond, one, idle), "gpu_queue", "", "device gpu! requested"},
		{"gpu with a GPU worker", situation("gpu", w, time.Second, time.Millisecond, one, one), "gpu_queue", "", "GPU preferred, 1 GPU worker(s) polling"},
		{"gpu without GPU workers falls back", situation("gpu", w, time.Second, time.Millisecond, one, idle), "cpu_queue", "no GPU worker polling gpu_queue", "fallback to CPU"},
		{"gpu with a backlog slower than the CPU falls back", situation("gpu", w, time.Second, 100*time.Millisecond, one, QueueState{Pollers: 1, Backlog: 50}),
			"cpu_queue", "GPU backlog of 50 jobs would make it slower than the CPU", "fallback to CPU"},
		{"gpu with a short backlog stays on the GPU", situation("gpu", w, time.Second, 100*time.Millisecond, one, QueueState{Pollers: 1, Backlog: 5}),
			"gpu_queue", "", "GPU preferred"},
		{"gpu with a backlog but no CPU worker stays on the GPU", situation("gpu", w, time.Second, 100*time.Millisecond, idle, QueueState{Pollers: 1, Backlog: 50}),
			"gpu_queue", "", "GPU preferred"},
		{"auto without GPU workers", situation("auto", w, time.Second, time.Millisecond, one, idle), "cpu_queue", "", "auto: no GPU worker polling gpu_queue"},
		{"auto without CPU workers", situation("auto", w, time.Second, time.Millisecond, idle, one), "gpu_queue", "", "auto: no CPU worker polling cpu_queue"},
		{"auto picks the GPU when it finishes first", situation("auto", w, time.Second, time.Millisecond, one, one), "gpu_queue", "", "auto: GPU expected to finish in 1ms"},
		{"auto picks the CPU when it finishes first", situation("auto", w, time.Millisecond, 60*time.Millisecond, one, one), "cpu_queue", "", "auto: GPU expected to finish in 60ms"},
		{"auto counts the GPU backlog", situation("auto", w, time.Second, 100*time.Millisecond, QueueState{Pollers: 2, Backlog: 1}, QueueState{Pollers: 1, Backlog: 30}),
			"cpu_queue", "", "wait 3s"},
	}
	for _, tt := range tests {
		d := Decide(tt.in, nil, Options{})
		if d.Queue != tt.queue || !strings.HasPrefix(d.Fallback, tt.fallback) || (tt.fallback == "") != (d.Fallback == "") || !strings.Contains(d.Reason, tt.why) {
			t.Errorf("%s: queue %s fallback %q reason %q; want %s %q %q", tt.name, d.Queue, d.Fallback, d.Reason, tt.queue, tt.fallback, tt.why)
		}
		wantType := map[string]string{"cpu_queue": "cpu", "gpu_queue": "gpu"}[d.Queue]
		if d.WorkerType != wantType {
			t.Errorf("%s: worker type %s on %s", tt.name, d.WorkerType, d.Queue)
		}
		if d.Queue == "gpu_queue" && d.ScheduleToStart <= 0 {
			t.Errorf("%s: a GPU job must have a schedule-to-start bound", tt.name)
		}
	}
}

func TestDecideEstimatesAndTimeouts(t *testing.T) {
	in := situation("gpu", jobs.Work{}, 10*time.Minute, time.Minute, QueueState{Pollers: 1}, QueueState{Pollers: 1})
	d := Decide(in, nil, Options{TimeoutFactor: 3, TimeoutFloor: time.Minute, PreferGPUWait: time.Second})
	if d.EstimatedTime != 48 || d.EstimatedCPUTime != 600 {
		t.Errorf("estimates %v / %v s, want the GPU's processing 48 s and the CPU's 600 s", d.EstimatedTime, d.EstimatedCPUTime)
	}
	if d.StartToClose != 3*time.Minute || d.CPUStartToClose != 30*time.Minute || d.ScheduleToStart != time.Second {
		t.Errorf("timeouts %s / %s / %s", d.StartToClose, d.CPUStartToClose, d.ScheduleToStart)
	}
	cpu := d.OnCPU("gone")
	if cpu.StartToClose != 30*time.Minute || cpu.EstimatedTime != 600 || cpu.ScheduleToStart != 0 || cpu.Fallback != "gone" {
		t.Errorf("fallback decision %+v", cpu)
	}
}

func TestWaitSharesTheBacklogAmongPollers(t *testing.T) {
	d := DeviceSituation{Queue: QueueState{Pollers: 4, Backlog: 10}, MeanJob: 2 * time.Second}
	if got := d.Wait(); got != 5*time.Second {
		t.Errorf("wait %s, want 10 jobs × 2 s / 4 workers = 5 s", got)
	}
	d.MeanJob = 0
	d.Prediction.Total = time.Second
	if got := d.Wait(); got != 2500*time.Millisecond {
		t.Errorf("wait without a measured mean %s, want the job's own estimate per job", got)
	}
}

// A strategy decides only for auto and gpu; its CPU choice for a GPU-preferring job is labelled.
func TestDecideWithAStrategy(t *testing.T) {
	alwaysCPU := StrategyFunc(func(Situation) Choice { return Choice{WorkerType: "cpu", Reason: "cheaper"} })
	alwaysGPU := StrategyFunc(func(Situation) Choice { return Choice{WorkerType: "gpu", Reason: "faster"} })
	one := QueueState{Pollers: 1}
	in := func(device string) Situation {
		return situation(device, jobs.Work{FLOPs: 1e9}, time.Second, time.Millisecond, one, one)
	}
	for _, tt := range []struct {
		s                    Strategy
		device               string
		queue, fallback, why string
	}{
		{alwaysCPU, "auto", "cpu_queue", "", "cheaper"},
		{alwaysCPU, "gpu", "cpu_queue", "the scheduling strategy chose the CPU: cheaper", "fallback to CPU"},
		{alwaysCPU, "gpu!", "gpu_queue", "", "device gpu! requested"},
		{alwaysGPU, "cpu", "cpu_queue", "", "device cpu requested"},
		{alwaysGPU, "auto", "gpu_queue", "", "faster"},
	} {
		d := Decide(in(tt.device), tt.s, Options{})
		if d.Queue != tt.queue || d.Fallback != tt.fallback || !strings.Contains(d.Reason, tt.why) {
			t.Errorf("%s: queue %s fallback %q reason %q; want %s %q %q", tt.device, d.Queue, d.Fallback, d.Reason, tt.queue, tt.fallback, tt.why)
		}
	}
}

// GPU jobs that share a GPU shorten the GPU queue's wait: 20 queued jobs of 100 ms on one GPU
// worker make a GPU-preferring job slower than the 1 s CPU, unless four of them run at once.
func TestWaitCountsJobsSharingAGPU(t *testing.T) {
	in := situation("gpu", jobs.Work{}, time.Second, 100*time.Millisecond, QueueState{Pollers: 1}, QueueState{Pollers: 1, Backlog: 20})
	if d := Decide(in, nil, Options{}); d.Queue != jobs.CPUQueue {
		t.Errorf("one job per GPU: %s (%s), want the CPU", d.Queue, d.Reason)
	}
	in.GPU.Share = 4
	if got := in.GPU.Wait(); got != 500*time.Millisecond {
		t.Errorf("wait %s, want 20 × 100 ms / 4 = 500 ms", got)
	}
	if d := Decide(in, nil, Options{}); d.Queue != jobs.GPUQueue {
		t.Errorf("four jobs per GPU: %s (%s), want the GPU", d.Queue, d.Reason)
	}
}

// The share follows the GPUs' memory, learned from results, and the per-GPU limit: one job at a
// time before any GPU result, the limit for small jobs, fewer for large ones.
func TestGPUShare(t *testing.T) {
	small, large := jobs.Work{MemBytes: 100 << 20}, jobs.Work{MemBytes: 30 << 30}
	model := estimate.NewModel()
	if got := GPUShare(small, model.DeviceMemory(estimate.GPU), Options{}); got != 1 {
		t.Errorf("before any GPU result: %d, want 1", got)
	}
	model.Observe(estimate.Observation{JobType: "vector_addition", Device: estimate.GPU, Processing: 0.01, DeviceMemory: 80 << 30})
	mem := model.DeviceMemory(estimate.GPU)
	for _, tc := range []struct {
		w     jobs.Work
		limit int
		want  int
	}{{small, 0, 4}, {small, 3, 3}, {small, 1, 1}, {large, 0, 2}} {
		if got := GPUShare(tc.w, mem, Options{GPUJobsPerGPU: tc.limit}); got != tc.want {
			t.Errorf("GPUShare(%d MiB, 80 GiB, limit %d) = %d, want %d", tc.w.MemBytes>>20, tc.limit, got, tc.want)
		}
	}
}

// A job that needs GPUs prefers a GPU worker under auto, and runs on a CPU only as a labelled
// fallback; one that needs none stays on the CPU.
func TestJobsThatAskForGPUsPreferThem(t *testing.T) {
	one := QueueState{Pollers: 1}
	gpuJob := situation("auto", jobs.Work{GPUs: 2}, time.Millisecond, time.Millisecond, one, one)
	if d := Decide(gpuJob, nil, Options{}); d.Queue != jobs.GPUQueue {
		t.Errorf("a 2-GPU command under auto went to %s (%s)", d.Queue, d.Reason)
	}
	gpuJob.GPU.Queue = QueueState{}
	if d := Decide(gpuJob, nil, Options{}); d.Queue != jobs.CPUQueue || d.Fallback == "" {
		t.Errorf("without GPU workers: %s, fallback %q: want a labelled CPU fallback", d.Queue, d.Fallback)
	}
	cpuJob := situation("auto", jobs.Work{}, 0, 0, one, one)
	cpuJob.GPU.Prediction.Total = 70 * time.Millisecond // a GPU job's fixed setup
	if d := Decide(cpuJob, nil, Options{}); d.Queue != jobs.CPUQueue {
		t.Errorf("a CPU command under auto went to %s", d.Queue)
	}
}
