package activities

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/workflows"
)

// fakeGPURunner runs nothing and reports the telemetry it is given, as the CUDA runner does with
// NVML (Telemetry set) and without it (nil).
type fakeGPURunner struct{ telemetry *jobs.Telemetry }

func (fakeGPURunner) Device() jobs.DeviceInfo {
	return jobs.DeviceInfo{WorkerType: jobs.WorkerTypeGPU, Name: "fake GPU", Memory: 1 << 30}
}
func (fakeGPURunner) Fits(jobs.Work) error { return nil }
func (fakeGPURunner) Admit(string, jobs.Work) (func() error, error) {
	return func() error { return nil }, nil
}
func (f fakeGPURunner) Run(context.Context, jobs.Params, jobs.Reporter) (jobs.Output, error) {
	return jobs.Output{Metrics: map[string]float64{"gbps": 1}, Telemetry: f.telemetry}, nil
}

// The Execute activity puts a GPU job's telemetry into its result, and leaves the fields out
// (not zero) when the runner had none.
func TestExecuteTelemetry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		telemetry *jobs.Telemetry
		want      []string
		absent    []string
	}{
		{"nvml", &jobs.Telemetry{Samples: 3, UtilizationMean: 0, UtilizationPeak: 87.5, MemoryPeak: 3 << 30},
			[]string{`"gpu_utilization_mean":0`, `"gpu_utilization_peak":87.5`, `"gpu_memory_peak":3221225472`}, nil},
		{"no nvml", nil, nil, []string{"gpu_utilization", "gpu_memory_peak"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			ex := &Executor{Kinds: builtin.Kinds(), Runner: fakeGPURunner{tc.telemetry}, WorkerID: "w", Logger: zap.NewNop()}
			env.RegisterActivityWithOptions(ex.Execute, activity.RegisterOptions{Name: workflows.ExecuteActivity})
			v, err := env.ExecuteActivity(workflows.ExecuteActivity, workflows.ExecuteInput{JobID: "job-000000000001", JobType: builtin.VectorAdditionKind, Params: []byte(`{"size": 8, "iterations": 1}`)})
			if err != nil {
				t.Fatal(err)
			}
			var res jobs.Result
			if err := v.Get(&res); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(res)
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("result %s lacks %s", b, w)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(string(b), a) {
					t.Errorf("result %s has %s", b, a)
				}
			}
		})
	}
}
