package workflows

import (
	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/jobs"
)

// SearchAttributes are the ones a job is started with, by the starter, by a sweep for its
// children and by a schedule for its runs.
func SearchAttributes(req jobs.Request) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{
		SearchJobType.ValueSet(req.JobType),
		SearchDevice.ValueSet(req.EffectiveDevice()),
		SearchPriority.ValueSet(int64(req.EffectivePriority())),
	}
	if req.Tenant != "" {
		updates = append(updates, SearchTenant.ValueSet(req.Tenant))
	}
	// Where the job goes is known up front for these policies; the others learn it when scheduled.
	switch req.EffectiveDevice() {
	case jobs.DeviceCPU:
		updates = append(updates, SearchWorkerType.ValueSet(jobs.WorkerTypeCPU))
	case jobs.DeviceRequireGPU:
		updates = append(updates, SearchWorkerType.ValueSet(jobs.WorkerTypeGPU))
	}
	return temporal.NewSearchAttributes(updates...)
}
