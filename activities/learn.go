package activities

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// Learner feeds completed results into the scheduler's run-time model and, when Path is set,
// saves the model there so a restarted scheduler keeps what it learned. Results arrive from
// concurrent publish activities; the saves are serialised and debounced: at most one every
// SaveEvery, the last one when the worker closes the learner.
type Learner struct {
	Kinds  *jobs.Kinds
	Model  *estimate.Model
	Path   string
	Logger *zap.Logger
	// SaveEvery is the least time between two saves; default 2s.
	SaveEvery time.Duration

	mu     sync.Mutex
	timer  *time.Timer          // a save is pending
	ends   map[string]time.Time // worker → the end of its last job, for the dispatch gaps
	saving sync.Mutex           // one save at a time
	saves  atomic.Int64
}

// Learn records one result; failed, canceled and unparseable ones teach nothing.
func (l *Learner) Learn(r jobs.Result) {
	if r.Status != jobs.StatusCompleted {
		return
	}
	if r.WorkerID != "" && !r.StartTime.IsZero() {
		l.mu.Lock()
		if l.ends == nil {
			l.ends = map[string]time.Time{}
		}
		if prev, ok := l.ends[r.WorkerID]; ok && r.StartTime.After(prev) {
			l.Model.ObserveGap(r.WorkerType, r.StartTime.Sub(prev).Seconds())
		}
		l.ends[r.WorkerID] = r.EndTime
		l.mu.Unlock()
	}
	p, err := l.Kinds.Decode(r.JobType, r.Params)
	if err != nil {
		return
	}
	l.Model.Observe(estimate.Observation{
		JobType: r.JobType, Device: r.WorkerType, Work: p.Work(),
		Processing: r.ProcessingTime, Transfer: r.TransferTime, DeviceMemory: r.DeviceMemory,
		Occupancy: occupancy(r),
	})
	if l.Path == "" {
		return
	}
	every := l.SaveEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	l.mu.Lock()
	if l.timer == nil {
		l.timer = time.AfterFunc(every, l.save)
	}
	l.mu.Unlock()
}

// Close saves what is pending now; later results are not saved.
func (l *Learner) Close() {
	l.mu.Lock()
	pending := l.timer != nil && l.timer.Stop()
	l.mu.Unlock()
	if pending {
		l.save()
	}
	l.saving.Lock() // wait for a save in progress
	defer l.saving.Unlock()
}

func (l *Learner) save() {
	l.mu.Lock()
	l.timer = nil
	l.mu.Unlock()
	l.saving.Lock()
	defer l.saving.Unlock()
	l.saves.Add(1)
	if err := l.Model.Save(l.Path); err != nil {
		l.Logger.Warn("estimates not saved", zap.Error(err))
	}
}

// occupancy is how long r held its worker, seconds (0 when its times do not say).
func occupancy(r jobs.Result) float64 {
	if r.StartTime.IsZero() || r.EndTime.Before(r.StartTime) {
		return 0
	}
	return r.EndTime.Sub(r.StartTime).Seconds()
}
