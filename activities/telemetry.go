package activities

import "github.com/gpujobs/gpujobs/jobs"

// withTelemetry copies a GPU job's NVML figures into its result; without them (a CPU job, a
// node without NVML) the result's fields stay absent rather than zero.
func withTelemetry(res *jobs.Result, t *jobs.Telemetry) {
	if t == nil || t.Samples == 0 {
		return
	}
	mean, peak := t.UtilizationMean, t.UtilizationPeak
	res.GPUUtilizationMean, res.GPUUtilizationPeak, res.GPUMemoryPeak = &mean, &peak, t.MemoryPeak
}
