package jobclient

import (
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

func TestSimulatePlaysTheQueueForward(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	job := func(id string, prio int, queuedAgo, total time.Duration, running bool) queuedJob {
		st := workflows.JobState{Stage: workflows.StageExecuting, Queue: jobs.CPUQueue, Priority: prio, Total: total, Since: now.Add(-queuedAgo)}
		if running {
			st.Worker, st.StartedAt = &jobs.Heartbeat{WorkerID: "w"}, now.Add(-queuedAgo)
		}
		return queuedJob{id: id, state: st}
	}
	got := simulate([]queuedJob{
		job("run-1", 3, 4*time.Second, 10*time.Second, true), // ends in 6 s
		job("run-2", 3, 1*time.Second, 3*time.Second, true),  // ends in 2 s
		job("late", 3, 1*time.Second, 5*time.Second, false),
		job("early", 3, 9*time.Second, 4*time.Second, false),
		job("urgent", 1, 0, 1*time.Second, false),
	}, 2, now)
	want := map[string]struct {
		pos        int
		start, end time.Duration
	}{
		"run-1": {0, 0, 6 * time.Second}, "run-2": {0, 0, 2 * time.Second},
		"urgent": {1, 2 * time.Second, 3 * time.Second}, // priority 1 first, on the slot run-2 frees
		"early":  {2, 3 * time.Second, 7 * time.Second},
		"late":   {3, 6 * time.Second, 11 * time.Second},
	}
	for id, w := range want {
		p := got[id]
		var start time.Duration
		if !p.PredictedStart.IsZero() {
			start = p.PredictedStart.Sub(now)
		}
		if p.Position != w.pos || start != w.start || p.PredictedEnd.Sub(now) != w.end || p.Waiting != 3 || p.Running != 2 {
			t.Errorf("%s: position %d start +%s end +%s (waiting %d running %d), want %d +%s +%s",
				id, p.Position, start, p.PredictedEnd.Sub(now), p.Waiting, p.Running, w.pos, w.start, w.end)
		}
	}
}

// A queue no worker polls is played as if one started now, and its predictions say so with
// pollers 0 (the starter and the dashboard flag it) rather than claiming a worker.
func TestSimulateWithoutAPollerSaysSo(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	st := func(ago time.Duration) workflows.JobState {
		return workflows.JobState{Stage: workflows.StageExecuting, Queue: jobs.GPUQueue, Total: 10 * time.Second, Since: now.Add(-ago)}
	}
	got := simulate([]queuedJob{{id: "first", state: st(2 * time.Second)}, {id: "second", state: st(time.Second)}}, 0, now)
	f, s := got["first"], got["second"]
	if f.Pollers != 0 || s.Pollers != 0 || f.Position != 1 || !f.PredictedStart.Equal(now) || s.Position != 2 || !s.PredictedStart.Equal(now.Add(10*time.Second)) {
		t.Errorf("without a poller: first %+v, second %+v; want pollers 0 and one slot from now", f, s)
	}
}
