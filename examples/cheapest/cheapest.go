// Package cheapest is an example of a scheduling strategy added from outside gpujobs: it sends
// a job to whichever device is expected to cost less (predicted device time × price per hour),
// however long the job waits for it. gpujobs's own strategy (scheduling.Default) picks the device
// that finishes first instead.
package cheapest

import (
	"fmt"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling"
)

// Strategy prices device time; zero prices mean 2.50 per GPU-hour and 0.04 per CPU-hour (about
// what a cloud charges for one GPU and one core).
type Strategy struct {
	GPUPerHour, CPUPerHour float64
}

// Choose implements scheduling.Strategy. A device kind without workers is never chosen.
func (s Strategy) Choose(in scheduling.Situation) scheduling.Choice {
	gpuPrice, cpuPrice := s.GPUPerHour, s.CPUPerHour
	if gpuPrice <= 0 {
		gpuPrice = 2.50
	}
	if cpuPrice <= 0 {
		cpuPrice = 0.04
	}
	gpu, cpu := cost(in.GPU.Prediction.Total, gpuPrice), cost(in.CPU.Prediction.Total, cpuPrice)
	why := fmt.Sprintf("cheapest: GPU %.6f, CPU %.6f per job", gpu, cpu)
	switch {
	case in.GPU.Queue.Pollers == 0:
		return scheduling.Choice{WorkerType: jobs.WorkerTypeCPU, Fallback: "no GPU worker polling " + jobs.GPUQueue, Reason: "cheapest: no GPU worker polling"}
	case in.CPU.Queue.Pollers > 0 && cpu <= gpu:
		return scheduling.Choice{WorkerType: jobs.WorkerTypeCPU, Fallback: "the CPU is cheaper (" + why + ")", Reason: why}
	}
	return scheduling.Choice{WorkerType: jobs.WorkerTypeGPU, Reason: why}
}

func cost(d time.Duration, perHour float64) float64 { return d.Hours() * perHour }
