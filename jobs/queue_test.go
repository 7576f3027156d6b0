package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

func TestQueueSnapshotValidate(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	waiting := func(id string, pos int) jobs.Prediction {
		return jobs.Prediction{JobID: id, Queue: jobs.CPUQueue, Position: pos, Waiting: 2, Running: 1, Pollers: 1,
			PredictedStart: now.Add(time.Duration(pos) * time.Minute), PredictedEnd: now.Add(time.Duration(pos+1) * time.Minute)}
	}
	running := jobs.Prediction{JobID: "job-run", Queue: jobs.GPUQueue, Running: 1, Pollers: 1, PredictedEnd: now.Add(time.Minute)}
	good := func() jobs.QueueSnapshot {
		return jobs.QueueSnapshot{At: now, Jobs: []jobs.Prediction{waiting("job-a", 1), waiting("job-b", 2), running}}
	}
	if err := good().Validate(now); err != nil {
		t.Fatalf("a valid snapshot: %v", err)
	}
	if err := (jobs.QueueSnapshot{At: now}).Validate(now); err != nil {
		t.Errorf("an empty snapshot: %v", err)
	}
	cases := []struct {
		name   string
		change func(*jobs.QueueSnapshot)
		want   string
	}{
		{"no time", func(s *jobs.QueueSnapshot) { s.At = time.Time{} }, "at 0001"},
		{"a clock two days off", func(s *jobs.QueueSnapshot) { s.At = now.Add(48 * time.Hour) }, "within a day of now"},
		{"unknown queue", func(s *jobs.QueueSnapshot) { s.Jobs[0].Queue = "bogus" }, `jobs[0]: queue "bogus": want cpu_queue or gpu_queue`},
		{"empty job ID", func(s *jobs.QueueSnapshot) { s.Jobs[1].JobID = "" }, "jobs[1]: invalid job_id: empty"},
		{"a job twice", func(s *jobs.QueueSnapshot) { s.Jobs[1].JobID = "job-a" }, "job_id job-a listed twice"},
		{"position past the waiting count", func(s *jobs.QueueSnapshot) { s.Jobs[1].Position = 3 }, "position 3: want 0 (running) to waiting (2)"},
		{"negative position", func(s *jobs.QueueSnapshot) { s.Jobs[0].Position = -1 }, "position -1"},
		{"negative pollers", func(s *jobs.QueueSnapshot) { s.Jobs[0].Pollers = -5 }, "pollers -5: want 0 to 10000"},
		{"huge waiting count", func(s *jobs.QueueSnapshot) { s.Jobs[0].Waiting = 1 << 40 }, "waiting 1099511627776"},
		{"end in year 9999", func(s *jobs.QueueSnapshot) { s.Jobs[0].PredictedEnd = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, "predicted_end 9999"},
		{"end before start", func(s *jobs.QueueSnapshot) { s.Jobs[0].PredictedEnd = now }, "predicted_start"},
		{"start long past", func(s *jobs.QueueSnapshot) { s.Jobs[0].PredictedStart = now.Add(-time.Hour) }, "predicted_start"},
		{"running job with a start", func(s *jobs.QueueSnapshot) { s.Jobs[2].PredictedStart = now }, "a running job (position 0) has none"},
		{"too many jobs", func(s *jobs.QueueSnapshot) { s.Jobs = make([]jobs.Prediction, jobs.MaxSnapshotJobs+1) }, "10001 jobs: want at most 10000"},
	}
	for _, c := range cases {
		s := good()
		c.change(&s)
		err := s.Validate(now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one with %q", c.name, err, c.want)
		}
	}
}
