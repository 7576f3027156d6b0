package jobclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// Overlap policies of a schedule: what happens when a run is due while the previous one runs.
var Overlaps = map[string]enumspb.ScheduleOverlapPolicy{
	"skip":       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,       // the due run is dropped
	"buffer":     enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE, // one due run waits for the previous to end
	"buffer-all": enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL, // every due run waits, in order
	"allow":      enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,  // runs overlap (jobs queue for workers)
}

// OverlapNames lists the overlap policies, for help texts and errors.
var OverlapNames = []string{"skip", "buffer", "buffer-all", "allow"}

// memo keys of a schedule: the cron string as written (the server keeps only its parsed form)
// and the job it starts.
const (
	memoCron    = "gpujobs_cron"
	memoOverlap = "gpujobs_overlap"
)

// ScheduleSpec is a recurring job: Temporal starts Job every time Cron matches, with the job
// ID <name>-<scheduled time, RFC 3339>.
type ScheduleSpec struct {
	Name string
	// Cron is a cron expression: 5 fields (minute hour day-of-month month day-of-week), 6 (with
	// the year), 7 (seconds first), @daily-style names, or "@every 30s"; "CRON_TZ=Europe/Madrid ..."
	// sets the time zone (default UTC).
	Cron    string
	Overlap string // skip (default), buffer, buffer-all or allow
	Note    string
	Paused  bool
	// Job is the job each run starts, as Build made it; its JobID and SubmitTime are not used.
	Job jobs.Request
}

// runSuffix is what Temporal appends to a scheduled run's workflow ID.
const runSuffix = "-2006-01-02T15:04:05Z"

// ValidateScheduleName checks that name can be a schedule's ID and its runs' job IDs.
func ValidateScheduleName(name string) error {
	if err := jobs.ValidateJobID(name + runSuffix); err != nil || name == "" {
		return fmt.Errorf("invalid schedule name %q: 1..%d printable characters without spaces", name, jobs.MaxJobIDLen-len(runSuffix))
	}
	return nil
}

func overlapPolicy(name string) (enumspb.ScheduleOverlapPolicy, error) {
	if name == "" {
		name = "skip"
	}
	p, ok := Overlaps[name]
	if !ok {
		return 0, fmt.Errorf("invalid --overlap %q: allowed %s", name, strings.Join(OverlapNames, ", "))
	}
	return p, nil
}

// CreateSchedule creates the schedule on Temporal.
func CreateSchedule(ctx context.Context, c client.Client, s ScheduleSpec) error {
	if err := ValidateScheduleName(s.Name); err != nil {
		return err
	}
	if strings.TrimSpace(s.Cron) == "" {
		return errors.New("--cron is empty: give a cron expression such as '0 3 * * *' or '@every 10m'")
	}
	overlap, err := overlapPolicy(s.Overlap)
	if err != nil {
		return err
	}
	req := s.Job
	req.JobID, req.SubmitTime = "", time.Time{} // each run's workflow ID is its job ID; its start is its submit time
	_, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:      s.Name,
		Spec:    client.ScheduleSpec{CronExpressions: []string{s.Cron}},
		Overlap: overlap,
		Note:    s.Note,
		Paused:  s.Paused,
		Memo:    map[string]any{memoCron: s.Cron, memoOverlap: cmp.Or(s.Overlap, "skip")},
		Action: &client.ScheduleWorkflowAction{
			ID:                    s.Name,
			Workflow:              workflows.JobWorkflowName,
			Args:                  []any{req},
			TaskQueue:             jobs.JobQueue,
			TypedSearchAttributes: SearchAttributes(req),
			Priority:              temporal.Priority{PriorityKey: req.EffectivePriority(), FairnessKey: req.Tenant},
			StaticSummary:         "scheduled by " + s.Name + " (" + s.Cron + "): " + workflows.Summary(req),
		},
	})
	var badArg *serviceerror.InvalidArgument
	switch {
	case errors.Is(err, temporal.ErrScheduleAlreadyRunning):
		return fmt.Errorf("schedule %s exists already: delete it first, or pick another name", s.Name)
	case errors.As(err, &badArg):
		return fmt.Errorf("schedule %s: --cron %q: %s", s.Name, s.Cron, badArg.Message)
	case err != nil:
		return fmt.Errorf("create schedule %s: %w", s.Name, err)
	}
	return nil
}

// ScheduleRun is one job a schedule started.
type ScheduleRun struct {
	JobID        string    `json:"job_id"`
	ScheduledFor time.Time `json:"scheduled_for"`
	StartedAt    time.Time `json:"started_at"`
}

// Schedule is a schedule as describe and list show it.
type Schedule struct {
	Name    string `json:"name"`
	Cron    string `json:"cron"`
	Overlap string `json:"overlap"`
	Paused  bool   `json:"paused"`
	Note    string `json:"note,omitempty"`
	// Job is the job each run starts (describe only).
	Job *jobs.Request `json:"job,omitempty"`
	// Runs counts the jobs started, SkippedOverlap the runs dropped by the overlap policy
	// (describe only).
	Runs           int           `json:"runs"`
	SkippedOverlap int           `json:"skipped_overlap"`
	Running        []string      `json:"running,omitempty"`
	Recent         []ScheduleRun `json:"recent"`
	Next           []time.Time   `json:"next"`
}

func scheduleError(name string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("no schedule %s in this namespace", name)
	}
	return fmt.Errorf("schedule %s: %w", name, err)
}

// DescribeSchedule reads a schedule.
func DescribeSchedule(ctx context.Context, c client.Client, name string) (Schedule, error) {
	d, err := c.ScheduleClient().GetHandle(ctx, name).Describe(ctx)
	if err != nil {
		return Schedule{}, scheduleError(name, err)
	}
	s := Schedule{Name: name, Runs: d.Info.NumActions, SkippedOverlap: d.Info.NumActionsSkippedOverlap,
		Recent: runs(d.Info.RecentActions), Next: nonNil(d.Info.NextActionTimes)}
	s.Cron, s.Overlap = memoString(d.Memo, memoCron), memoString(d.Memo, memoOverlap)
	if st := d.Schedule.State; st != nil {
		s.Paused, s.Note = st.Paused, st.Note
	}
	for _, w := range d.Info.RunningWorkflows {
		s.Running = append(s.Running, w.WorkflowID)
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok && len(a.Args) == 1 {
		if p, ok := a.Args[0].(*commonpb.Payload); ok {
			var req jobs.Request
			if converter.GetDefaultDataConverter().FromPayload(p, &req) == nil {
				s.Job = &req
			}
		}
	}
	return s, nil
}

// ListSchedules lists the namespace's schedules that start jobs, by name.
func ListSchedules(ctx context.Context, c client.Client) ([]Schedule, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out := []Schedule{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if e.WorkflowType.Name != workflows.JobWorkflowName {
			continue
		}
		out = append(out, Schedule{Name: e.ID, Cron: memoString(e.Memo, memoCron), Overlap: memoString(e.Memo, memoOverlap),
			Paused: e.Paused, Note: e.Note, Recent: runs(e.RecentActions), Next: nonNil(e.NextActionTimes)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func runs(actions []client.ScheduleActionResult) []ScheduleRun {
	out := []ScheduleRun{}
	for _, a := range actions {
		r := ScheduleRun{ScheduledFor: a.ScheduleTime, StartedAt: a.ActualTime}
		if a.StartWorkflowResult != nil {
			r.JobID = a.StartWorkflowResult.WorkflowID
		}
		out = append(out, r)
	}
	return out
}

func nonNil(t []time.Time) []time.Time { return append([]time.Time{}, t...) }

func memoString(m *commonpb.Memo, key string) string {
	p := m.GetFields()[key]
	if p == nil {
		return ""
	}
	var s string
	if json.Unmarshal(p.GetData(), &s) != nil {
		return ""
	}
	return s
}

// Schedule actions that take no arguments beyond a note.
const (
	SchedulePause   = "pause"
	ScheduleUnpause = "unpause"
	ScheduleTrigger = "trigger"
	ScheduleDelete  = "delete"
)

// ScheduleActions lists them.
var ScheduleActions = []string{SchedulePause, ScheduleUnpause, ScheduleTrigger, ScheduleDelete}

// ControlSchedule pauses, unpauses, triggers (starts a run now, whatever the cron and the pause
// say) or deletes a schedule. Deleting a schedule leaves the jobs it started alone.
func ControlSchedule(ctx context.Context, c client.Client, name, action, note string) error {
	h := c.ScheduleClient().GetHandle(ctx, name)
	var err error
	switch action {
	case SchedulePause:
		err = h.Pause(ctx, client.SchedulePauseOptions{Note: note})
	case ScheduleUnpause:
		err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
	case ScheduleTrigger:
		// Trigger follows the schedule's overlap policy, so "skip" may drop it while a run is on.
		err = h.Trigger(ctx, client.ScheduleTriggerOptions{})
	case ScheduleDelete:
		err = h.Delete(ctx)
	default:
		return fmt.Errorf("unknown schedule action %q: %s", action, strings.Join(ScheduleActions, ", "))
	}
	if err != nil {
		return scheduleError(name, err)
	}
	return nil
}
