// Package estimate predicts how long a job takes on each kind of device, from the job's work
// estimate (FLOPs, bytes) and the rates each device kind sustains for that job type.
package estimate

import (
	"math"
	"time"

	"github.com/gpujobs/gpujobs/kernels"
)

// Rate is what a device kind sustains on one job type.
type Rate struct {
	GFLOPS float64 // compute rate, GFLOP/s
	GBPS   float64 // memory rate, GB/s
	// Overhead is a fixed cost per job (context, transfers, launch), seconds.
	Overhead float64
}

// Conservative defaults before anything has been measured: a 2-core CPU with OpenBLAS, and a
// modest GPU fed over PCIe. They err on the slow side so derived timeouts are generous.
var (
	DefaultCPU = Rate{GFLOPS: 20, GBPS: 8, Overhead: 0.01}
	DefaultGPU = Rate{GFLOPS: 5000, GBPS: 300, Overhead: 0.2}
)

// Time is the predicted processing time of w at rate r: whichever of compute and memory traffic
// takes longer, plus the fixed overhead.
func (r Rate) Time(w kernels.Work) time.Duration {
	s := r.Overhead
	if r.GFLOPS > 0 || r.GBPS > 0 {
		s += math.Max(safeDiv(w.FLOPs, r.GFLOPS*1e9), safeDiv(w.Bytes, r.GBPS*1e9))
	}
	return time.Duration(s * float64(time.Second))
}

func safeDiv(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// Timeout derives a start-to-close timeout from an estimate: factor times the estimate, never
// less than floor.
func Timeout(est time.Duration, factor float64, floor time.Duration) time.Duration {
	return max(floor, time.Duration(float64(est)*factor))
}
