package cheapest

import (
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

func situation(device string, cpu, gpu time.Duration, cpuPollers, gpuPollers int) scheduling.Situation {
	return scheduling.Situation{
		Request: jobs.Request{Device: device},
		CPU:     scheduling.DeviceSituation{Queue: scheduling.QueueState{Pollers: cpuPollers}, Prediction: estimate.Prediction{Processing: cpu, Total: cpu}},
		GPU:     scheduling.DeviceSituation{Queue: scheduling.QueueState{Pollers: gpuPollers}, Prediction: estimate.Prediction{Processing: gpu, Total: gpu}},
	}
}

func TestCheapestDeviceWins(t *testing.T) {
	s := Strategy{}
	for _, tt := range []struct {
		name            string
		in              scheduling.Situation
		queue, fallback string
	}{
		// 10 s of CPU cost 0.00011, 1 s of GPU 0.00069: the CPU, though the GPU finishes first.
		{"a job 10x faster on the GPU still goes to the cheaper CPU", situation("auto", 10*time.Second, time.Second, 1, 1), jobs.CPUQueue, ""},
		// 1000 s of CPU cost 0.011, 1 s of GPU 0.00069: the GPU.
		{"a job 1000x faster on the GPU goes there", situation("auto", 1000*time.Second, time.Second, 1, 1), jobs.GPUQueue, ""},
		{"a GPU-preferring job on the cheaper CPU is labelled", situation("gpu", 10*time.Second, time.Second, 1, 1), jobs.CPUQueue, "the CPU is cheaper"},
		{"no GPU worker", situation("auto", 1000*time.Second, time.Second, 1, 0), jobs.CPUQueue, ""},
		{"gpu! is not the strategy's to change", situation("gpu!", 10*time.Second, time.Second, 1, 1), jobs.GPUQueue, ""},
	} {
		d := scheduling.Decide(tt.in, s, scheduling.Options{})
		if d.Queue != tt.queue || !strings.HasPrefix(d.Fallback, tt.fallback) || (tt.fallback == "") != (d.Fallback == "") {
			t.Errorf("%s: queue %s fallback %q reason %q", tt.name, d.Queue, d.Fallback, d.Reason)
		}
	}
}
