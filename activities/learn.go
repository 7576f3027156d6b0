package activities

import (
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/estimate"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/workflows"
)

// Learner feeds completed results into the scheduler's run-time model and, when Path is set,
// saves the model there so a restarted scheduler keeps what it learned.
type Learner struct {
	Registry *kernels.Registry
	Model    *estimate.Model
	Path     string
	Logger   *zap.Logger
}

// Learn records one result; failed, canceled and unparseable ones teach nothing.
func (l *Learner) Learn(r workflows.JobResult) {
	if r.Status != workflows.StatusCompleted {
		return
	}
	p, err := l.Registry.Decode(r.JobType, r.Params)
	if err != nil {
		return
	}
	l.Model.Observe(estimate.Observation{
		JobType: r.JobType, Device: r.WorkerType, Work: p.Work(),
		Processing: r.ProcessingTime, Transfer: r.TransferTime, DeviceMemory: r.DeviceMemory,
	})
	if l.Path != "" {
		if err := l.Model.Save(l.Path); err != nil {
			l.Logger.Warn("estimates not saved", zap.Error(err))
		}
	}
}
