package activities

import (
	"context"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// Inspector reports the state of a task queue; the Temporal implementation asks DescribeTaskQueue.
type Inspector interface {
	Inspect(ctx context.Context, queue string) (scheduling.QueueState, error)
}

// Scheduler is the Schedule local activity: it validates a job, gathers the situation (its work,
// the predictions, each queue's load) and lets scheduling.Decide pick its task queue.
type Scheduler struct {
	Kinds     *jobs.Kinds
	Inspector Inspector
	// Model predicts run times; it learns from the results the scheduler worker publishes.
	Model *estimate.Model
	// Strategy chooses the device for auto and gpu jobs; nil means scheduling.Default.
	Strategy scheduling.Strategy
	Logger   *zap.Logger
	Options  scheduling.Options
}

// Schedule validates the request and its params (invalid ones fail here, before any worker is
// busy) and decides where the job runs.
func (s *Scheduler) Schedule(ctx context.Context, req jobs.Request) (scheduling.Decision, error) {
	if err := req.Validate(); err != nil {
		return scheduling.Decision{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrInvalidParams, err)
	}
	p, err := s.Kinds.Decode(req.JobType, req.Params)
	if err != nil {
		return scheduling.Decision{}, temporal.NewNonRetryableApplicationError(err.Error(), jobs.ErrInvalidParams, err)
	}
	params, err := json.Marshal(p)
	if err != nil {
		return scheduling.Decision{}, fmt.Errorf("encode params: %w", err)
	}
	in := scheduling.Situation{Request: req, Work: p.Work()}
	model := s.Model
	if model == nil {
		model = estimate.NewModel()
	}
	in.CPU.Prediction = model.Predict(req.JobType, estimate.CPU, in.Work)
	in.GPU.Prediction = model.Predict(req.JobType, estimate.GPU, in.Work)
	// A job ahead in the queue costs its worker its own time and the dispatch to the next.
	in.CPU.MeanJob, _ = model.MeanJob(estimate.CPU)
	in.GPU.MeanJob, _ = model.MeanJob(estimate.GPU)
	in.CPU.MeanJob += model.Gap(estimate.CPU)
	in.GPU.MeanJob += model.Gap(estimate.GPU)
	in.GPU.Share = scheduling.GPUShare(in.Work, model.DeviceMemory(estimate.GPU), s.Options)
	if req.EffectiveDevice() != jobs.DeviceCPU && req.EffectiveDevice() != jobs.DeviceRequireGPU {
		// Only policies that choose need the queues' load.
		if in.GPU.Queue, err = s.Inspector.Inspect(ctx, jobs.GPUQueue); err != nil {
			return scheduling.Decision{}, fmt.Errorf("inspect %s: %w", jobs.GPUQueue, err)
		}
		if in.CPU.Queue, err = s.Inspector.Inspect(ctx, jobs.CPUQueue); err != nil {
			return scheduling.Decision{}, fmt.Errorf("inspect %s: %w", jobs.CPUQueue, err)
		}
	}
	d := scheduling.Decide(in, s.Strategy, s.Options)
	d.Params = params
	s.Logger.Debug("scheduled", zap.String("job_id", req.JobID), zap.String("queue", d.Queue), zap.String("reason", d.Reason))
	return d, nil
}
