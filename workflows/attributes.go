package workflows

import (
	"encoding/json"
	"sort"
	"strings"

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

// Summary is a job's one-line static summary in the Web UI: its kind, the params that define it,
// the device it asked for.
func Summary(req jobs.Request) string {
	var params map[string]any
	_ = json.Unmarshal(req.Params, &params)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		if k == "seed" || k == "env" {
			continue
		}
		v, _ := json.Marshal(params[k])
		kv = append(kv, k+"="+string(v))
	}
	s := req.JobType
	if len(kv) > 0 {
		s += " " + strings.Join(kv, " ")
	}
	s += " · device " + req.EffectiveDevice()
	if len(s) > 400 {
		s = s[:399] + "…"
	}
	return s
}
