package jobclient

import (
	"container/heap"
	"context"
	"maps"
	"sort"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Prediction is a job's place in its queue and its predicted start and end (jobs.Prediction).
type Prediction = jobs.Prediction

// queuedJob is a job on a queue, as its workflow describes itself.
type queuedJob struct {
	id    string
	state workflows.JobState
}

// Predict returns the predictions of the jobs on the given queues (cpu_queue, gpu_queue), by
// job ID. It asks visibility once for the running jobs (at most 1000) and each of them for its
// state, whatever the number of queues.
func Predict(ctx context.Context, c client.Client, namespace string, queues []string, now time.Time) (map[string]Prediction, error) {
	for _, q := range queues {
		if err := jobs.ValidateQueue(q); err != nil {
			return nil, err
		}
	}
	byQueue, err := predictQueues(ctx, c, namespace, queues, now)
	if err != nil {
		return nil, err
	}
	out := map[string]Prediction{}
	for _, preds := range byQueue {
		maps.Copy(out, preds)
	}
	return out, nil
}

// Snapshot returns the predictions of every job on the CPU and the GPU queue, the waiting ones
// by queue and position first, then the running ones: what a scheduler worker serves to the
// monitor.
func Snapshot(ctx context.Context, c client.Client, namespace string, now time.Time) (jobs.QueueSnapshot, error) {
	queues := []string{jobs.CPUQueue, jobs.GPUQueue}
	byQueue, err := predictQueues(ctx, c, namespace, queues, now)
	if err != nil {
		return jobs.QueueSnapshot{}, err
	}
	snap := jobs.QueueSnapshot{At: now, Jobs: []Prediction{}}
	for _, q := range queues {
		for _, p := range byQueue[q] {
			snap.Jobs = append(snap.Jobs, p)
		}
	}
	sort.Slice(snap.Jobs, func(a, b int) bool {
		x, y := snap.Jobs[a], snap.Jobs[b]
		if (x.Position == 0) != (y.Position == 0) {
			return x.Position != 0 // waiting ones first
		}
		if x.Queue != y.Queue {
			return x.Queue < y.Queue
		}
		if x.Position != y.Position {
			return x.Position < y.Position
		}
		return x.JobID < y.JobID
	})
	return snap, nil
}

// predictQueues lists the running jobs once, asks each for its state, and plays each queue
// forward with as many slots as it has pollers.
func predictQueues(ctx context.Context, c client.Client, namespace string, queues []string, now time.Time) (map[string]map[string]Prediction, error) {
	want := map[string]bool{}
	types := map[string]bool{}
	for _, q := range queues {
		want[q] = true
		types[jobs.QueueWorkerType(q)] = true
	}
	open, err := List(ctx, c, Filter{State: StateRunning, Limit: 1000})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	found := map[string][]queuedJob{}
	sem := make(chan struct{}, 32)
	for _, s := range open {
		if s.WorkerType != "" && !types[s.WorkerType] {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st := stage(ctx, c, s.JobID)
			if st == nil || !want[st.Queue] || (st.Stage != workflows.StageExecuting && st.Stage != workflows.StageWaitingMemory) {
				return
			}
			mu.Lock()
			found[st.Queue] = append(found[st.Queue], queuedJob{id: s.JobID, state: *st})
			mu.Unlock()
		}()
	}
	wg.Wait()
	out := map[string]map[string]Prediction{}
	for _, q := range queues {
		qs, err := TemporalInspector{Client: c, Namespace: namespace}.Inspect(ctx, q)
		if err != nil {
			return nil, err
		}
		out[q] = simulate(found[q], qs.Pollers, now)
	}
	return out, nil
}

// simulate plays the queue forward with a slot per poller: the running jobs hold their slots
// until their estimated ends, the waiting ones take the slots as they free up, in dispatch
// order. A queue no worker polls is played with one slot, as if a worker started now, and its
// predictions say pollers 0.
func simulate(found []queuedJob, pollers int, now time.Time) map[string]Prediction {
	slots := max(pollers, 1)
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
	base := Prediction{Waiting: len(waiting), Running: len(running), Pollers: pollers}
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
