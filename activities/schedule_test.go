package activities_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/scheduling"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// queues is an Inspector with a fixed state per queue, recording which were asked.
type queues struct {
	state map[string]scheduling.QueueState
	asked map[string]bool
}

func (q *queues) Inspect(_ context.Context, name string) (scheduling.QueueState, error) {
	q.asked[name] = true
	return q.state[name], nil
}

// A job pinned to one device still says when it starts: its own queue's backlog counts, and the
// other device's queue is not asked about.
func TestPinnedJobsPredictTheirQueuesWait(t *testing.T) {
	model := estimate.NewModel()
	for range 4 {
		model.Observe(estimate.Observation{JobType: "vector_addition", Device: estimate.CPU,
			Work: jobs.Work{FLOPs: 1e6}, Processing: 1, Occupancy: 2})
	}
	for _, tc := range []struct {
		device, queue, other string
	}{
		{jobs.DeviceCPU, jobs.CPUQueue, jobs.GPUQueue},
		{jobs.DeviceRequireGPU, jobs.GPUQueue, jobs.CPUQueue},
	} {
		q := &queues{asked: map[string]bool{}, state: map[string]scheduling.QueueState{
			tc.queue: {Pollers: 2, Backlog: 10},
		}}
		s := &activities.Scheduler{Kinds: builtin.Kinds(), Inspector: q, Model: model, Logger: zap.NewNop()}
		d, err := s.Schedule(context.Background(), jobs.Request{JobID: "j", JobType: "vector_addition",
			Params: []byte(`{"size": 1000}`), Device: tc.device})
		if err != nil {
			t.Fatalf("%s: %v", tc.device, err)
		}
		if tc.device == jobs.DeviceCPU && d.Wait != 10*time.Second { // 10 jobs × 2s over 2 workers
			t.Errorf("%s: wait %s, want 10s", tc.device, d.Wait)
		}
		if tc.device == jobs.DeviceRequireGPU && d.Wait <= 0 {
			t.Errorf("%s: wait %s, want the GPU backlog's", tc.device, d.Wait)
		}
		if !q.asked[tc.queue] || q.asked[tc.other] {
			t.Errorf("%s: asked %v, want only %s", tc.device, q.asked, tc.queue)
		}
	}
}
