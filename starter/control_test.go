package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// status of a queued job says where it stands, and says so plainly when no worker polls its
// queue, instead of counting one that is not there.
func TestStatusOfAQueuedJob(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		pollers int
		want    string
	}{
		{2, "position 3 of 4 waiting on gpu_queue (1 running, 2 worker(s)); predicted start"},
		{0, "position 3 of 4 waiting on gpu_queue (1 running, no worker polls it: the times assume one starts now); predicted start"},
	} {
		var out bytes.Buffer
		st := jobclient.Status{Summary: jobclient.Summary{JobID: "job-q", JobType: "matrix_multiply", WorkerType: jobs.WorkerTypeGPU},
			Prediction: &jobs.Prediction{JobID: "job-q", Queue: jobs.GPUQueue, Position: 3, Waiting: 4, Running: 1, Pollers: c.pollers,
				PredictedStart: now.Add(time.Minute), PredictedEnd: now.Add(2 * time.Minute)}}
		(&app{}).printStatus(&out, st)
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("%d pollers:\n%s\nwant a line with %q", c.pollers, out.String(), c.want)
		}
		if short := startsAt(st.Prediction); (c.pollers == 0) != (short == "no worker polls gpu_queue") || (c.pollers > 0 && !strings.HasPrefix(short, "starts ~")) {
			t.Errorf("%d pollers: list and watch say %q", c.pollers, short)
		}
	}
}
