// Package workflows holds JobWorkflow, the orchestration of one job: schedule it onto the GPU or
// CPU task queue, execute it there, publish its result. Workflow code is deterministic: it makes
// decisions only from its input and from activity results, and does all I/O through activities.
// The types it exchanges (jobs.Request in, jobs.Result out) are in the leaf package jobs.
package workflows

import (
	"go.temporal.io/sdk/temporal"
)

// JobWorkflowName is the name JobWorkflow is registered and started under.
const JobWorkflowName = "JobWorkflow"

// Activity names, shared by the workflow (which calls them by name) and the workers (which
// register them), so neither package imports the other's implementation.
const (
	ScheduleActivity = "Schedule"
	ExecuteActivity  = "Execute"
	PublishActivity  = "PublishResult"
)

// Custom search attributes, registered by the dev server (and by the deployment's setup on a
// real cluster): the starter sets them when it submits a job, the workflow sets WorkerType once
// it knows where the job goes. `starter list` filters on them.
var (
	SearchJobType    = temporal.NewSearchAttributeKeyKeyword("JobType")
	SearchDevice     = temporal.NewSearchAttributeKeyKeyword("Device") // the requested policy
	SearchPriority   = temporal.NewSearchAttributeKeyInt64("Priority")
	SearchTenant     = temporal.NewSearchAttributeKeyKeyword("Tenant")
	SearchWorkerType = temporal.NewSearchAttributeKeyKeyword("WorkerType")
)
