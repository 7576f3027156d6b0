package activities

import (
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// Learner feeds completed results into the scheduler's run-time model and, when Path is set,
// saves the model there so a restarted scheduler keeps what it learned.
type Learner struct {
	Kinds  *jobs.Kinds
	Model  *estimate.Model
	Path   string
	Logger *zap.Logger
}

// Learn records one result; failed, canceled and unparseable ones teach nothing.
func (l *Learner) Learn(r jobs.Result) {
	if r.Status != jobs.StatusCompleted {
		return
	}
	p, err := l.Kinds.Decode(r.JobType, r.Params)
	if err != nil {
		return
	}
	l.Model.Observe(estimate.Observation{
		JobType: r.JobType, Device: r.WorkerType, Work: p.Work(),
		Processing: r.ProcessingTime, Transfer: r.TransferTime,
	})
	if l.Path != "" {
		if err := l.Model.Save(l.Path); err != nil {
			l.Logger.Warn("estimates not saved", zap.Error(err))
		}
	}
}
