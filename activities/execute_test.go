package activities

import (
	"testing"

	"github.com/gpujobs/gpujobs/workflows"
)

// A GPU runner says in Output.Info which of its devices ran the job; that wins over Device().
func TestDeviceFromInfo(t *testing.T) {
	res := workflows.JobResult{Device: "2 × NVIDIA H100 80GB HBM3", ComputeCapability: "9.0", DeviceMemory: 1}
	deviceFromInfo(&res, map[string]string{"device": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "device_memory": "85029158912"})
	if res.Device != "NVIDIA H100 80GB HBM3" || res.DeviceMemory != 85029158912 {
		t.Errorf("got %+v", res)
	}
	cpu := workflows.JobResult{Device: "AMD EPYC, 2 threads", DeviceMemory: 5}
	deviceFromInfo(&cpu, map[string]string{"blas": "openblas"})
	if cpu.Device != "AMD EPYC, 2 threads" || cpu.DeviceMemory != 5 {
		t.Errorf("CPU result changed: %+v", cpu)
	}
}
