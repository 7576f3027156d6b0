package jobclient

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
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
	Pollers  int    `json:"pollers"`
	// PredictedStart and PredictedEnd; PredictedStart is zero for a running job.
	PredictedStart time.Time `json:"predicted_start,omitzero"`
	PredictedEnd   time.Time `json:"predicted_end"`
}

// queuedJob is a job on a queue, as its workflow describes itself.
type queuedJob struct {
	id    string
	state workflows.JobState
}

// Predict returns the predictions of the queue's jobs (cpu_queue or gpu_queue), by job ID. It
// asks visibility for the queue's running jobs (at most 1000) and each of them for its state.
func Predict(ctx context.Context, c client.Client, namespace, queue string, now time.Time) (map[string]Prediction, error) {
	workerType := map[string]string{jobs.CPUQueue: jobs.WorkerTypeCPU, jobs.GPUQueue: jobs.WorkerTypeGPU}[queue]
	if workerType == "" {
		return nil, fmt.Errorf("queue %q: want %s or %s", queue, jobs.CPUQueue, jobs.GPUQueue)
	}
	open, err := List(ctx, c, Filter{State: StateRunning, Limit: 1000})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var found []queuedJob
	sem := make(chan struct{}, 32)
	for _, s := range open {
		if s.WorkerType != "" && s.WorkerType != workerType {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st := stage(ctx, c, s.JobID)
			if st == nil || st.Queue != queue || (st.Stage != workflows.StageExecuting && st.Stage != workflows.StageWaitingMemory) {
				return
			}
			mu.Lock()
			found = append(found, queuedJob{id: s.JobID, state: *st})
			mu.Unlock()
		}()
	}
	wg.Wait()
	qs, err := TemporalInspector{Client: c, Namespace: namespace}.Inspect(ctx, queue)
	if err != nil {
		return nil, err
	}
	return simulate(found, max(qs.Pollers, 1), now), nil
}

// simulate plays the queue forward: the running jobs hold their slots until their estimated
// ends, the waiting ones take the slots as they free up, in dispatch order.
func simulate(found []queuedJob, slots int, now time.Time) map[string]Prediction {
	var running, waiting []queuedJob
	for _, j := range found {
		if j.state.Worker != nil {
			running = append(running, j)
		} else {
			waiting = append(waiting, j)
		}
	}
	sort.Slice(waiting, func(a, b int) bool {
		x, y := waiting[a].state, waiting[b].state
		if x.Priority != y.Priority {
			return x.Priority < y.Priority
		}
		return x.Since.Before(y.Since)
	})
	free := &timeHeap{}
	out := map[string]Prediction{}
	base := Prediction{Waiting: len(waiting), Running: len(running), Pollers: slots}
	for _, j := range running {
		end := j.state.StartedAt.Add(j.state.Total)
		if end.Before(now) {
			end = now // overdue: it may end any moment
		}
		p := base
		p.JobID, p.Queue, p.PredictedEnd = j.id, j.state.Queue, end
		out[j.id] = p
		heap.Push(free, end)
	}
	for free.Len() < slots {
		heap.Push(free, now)
	}
	for i, j := range waiting {
		start := heap.Pop(free).(time.Time)
		// A slot taken by a job beyond the pollers' count frees when that one ends.
		end := start.Add(j.state.Total)
		heap.Push(free, end)
		p := base
		p.JobID, p.Queue, p.Position, p.PredictedStart, p.PredictedEnd = j.id, j.state.Queue, i+1, start, end
		out[j.id] = p
	}
	return out
}

// timeHeap is a min-heap of the times slots free up.
type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *timeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
