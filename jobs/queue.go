package jobs

import (
	"fmt"
	"time"
)

// Prediction is where a job waiting for a worker stands in its queue, and when it is expected
// to start and end: the jobs running on the queue's workers end when their estimates say, the
// jobs ahead of it (by priority, then by when they were queued) start as slots free up, one slot
// per polling worker, and the job takes its own estimate.
type Prediction struct {
	JobID    string `json:"job_id"`
	Queue    string `json:"queue"`
	Position int    `json:"position"` // 1 for the next job to start; 0 when it runs already
	Waiting  int    `json:"waiting"`  // jobs waiting on the queue
	Running  int    `json:"running"`
	Pollers  int    `json:"pollers"` // workers polling the queue; 0: none, and the times assume one starts now
	// PredictedStart and PredictedEnd; PredictedStart is zero for a running job.
	PredictedStart time.Time `json:"predicted_start,omitzero"`
	PredictedEnd   time.Time `json:"predicted_end"`
}

// QueueSnapshot is the predictions of every job on the CPU and GPU queues at one time: what a
// scheduler worker serves on its health address (GET /api/queue) and the monitor passes on.
type QueueSnapshot struct {
	At time.Time `json:"at"`
	// Jobs: the waiting ones by queue and position, then the running ones.
	Jobs []Prediction `json:"jobs"`
}

// QueueWorkerType is the worker type that polls an executing queue (cpu_queue, gpu_queue), ""
// for any other name.
func QueueWorkerType(queue string) string {
	switch queue {
	case CPUQueue:
		return WorkerTypeCPU
	case GPUQueue:
		return WorkerTypeGPU
	}
	return ""
}

// ValidateQueue checks that queue is one of the executing queues, cpu_queue or gpu_queue.
func ValidateQueue(queue string) error {
	if QueueWorkerType(queue) == "" {
		return fmt.Errorf("queue %q: want %s or %s", queue, CPUQueue, GPUQueue)
	}
	return nil
}

// MaxSnapshotJobs bounds a snapshot: the predictions cover at most this many open jobs.
const MaxSnapshotJobs = 10000

// Bounds of a prediction's times, around the snapshot's own time: a job ends at most this far
// ahead (a backlog of big jobs), and a running one started at most this far back.
const (
	maxPredictionAhead = 100 * 365 * 24 * time.Hour
	maxRunningSince    = 366 * 24 * time.Hour
)

// Validate checks a snapshot read from the network before it is served on: the known queues,
// counts that fit together, and times in order within a plausible window of its own time and
// of now (a clock skewed by more than a day is an error too).
func (s QueueSnapshot) Validate(now time.Time) error {
	if s.At.IsZero() || s.At.Sub(now).Abs() > 24*time.Hour {
		return fmt.Errorf("at %s: want a time within a day of now (%s)", s.At.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(s.Jobs) > MaxSnapshotJobs {
		return fmt.Errorf("%d jobs: want at most %d", len(s.Jobs), MaxSnapshotJobs)
	}
	seen := make(map[string]bool, len(s.Jobs))
	for i, p := range s.Jobs {
		if err := p.validate(s.At); err != nil {
			return fmt.Errorf("jobs[%d]: %w", i, err)
		}
		if seen[p.JobID] {
			return fmt.Errorf("jobs[%d]: job_id %s listed twice", i, p.JobID)
		}
		seen[p.JobID] = true
	}
	return nil
}

func (p Prediction) validate(at time.Time) error {
	if err := ValidateJobID(p.JobID); err != nil {
		return err
	}
	if err := ValidateQueue(p.Queue); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"waiting", p.Waiting}, {"running", p.Running}, {"pollers", p.Pollers}} {
		if c.v < 0 || c.v > MaxSnapshotJobs {
			return fmt.Errorf("%s %d: want 0 to %d", c.name, c.v, MaxSnapshotJobs)
		}
	}
	if p.Position < 0 || p.Position > p.Waiting {
		return fmt.Errorf("position %d: want 0 (running) to waiting (%d)", p.Position, p.Waiting)
	}
	if p.PredictedEnd.Before(at.Add(-maxRunningSince)) || p.PredictedEnd.After(at.Add(maxPredictionAhead)) {
		return fmt.Errorf("predicted_end %s: want a time from a year before to 100 years after %s", p.PredictedEnd.Format(time.RFC3339), at.Format(time.RFC3339))
	}
	switch {
	case p.Position == 0 && !p.PredictedStart.IsZero():
		return fmt.Errorf("predicted_start %s: a running job (position 0) has none", p.PredictedStart.Format(time.RFC3339))
	case p.Position > 0 && (p.PredictedStart.Before(at.Add(-time.Minute)) || p.PredictedEnd.Before(p.PredictedStart)):
		return fmt.Errorf("predicted_start %s: want a time from the snapshot's (%s) to predicted_end (%s)", p.PredictedStart.Format(time.RFC3339), at.Format(time.RFC3339), p.PredictedEnd.Format(time.RFC3339))
	}
	return nil
}
