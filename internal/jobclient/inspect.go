package jobclient

import (
	"context"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/scheduling"
)

// TemporalInspector asks Temporal's DescribeTaskQueue which workers poll a queue and how many
// tasks wait in it.
type TemporalInspector struct {
	Client    client.Client
	Namespace string
	// Freshness is how recently a poller must have polled to count as alive. Idle workers re-poll
	// about once a minute, and the server remembers a vanished worker for minutes, so the default
	// is 90s.
	Freshness time.Duration
}

func (t TemporalInspector) Inspect(ctx context.Context, queue string) (scheduling.QueueState, error) {
	resp, err := t.Client.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace:     t.Namespace,
		TaskQueue:     &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		ReportStats:   true, // backlog count; servers before 1.28 ignore it and report none
	})
	if err != nil {
		return scheduling.QueueState{}, err
	}
	fresh := t.Freshness
	if fresh <= 0 {
		fresh = 90 * time.Second
	}
	st := scheduling.QueueState{Backlog: resp.GetStats().GetApproximateBacklogCount()}
	for _, p := range resp.GetPollers() {
		if time.Since(p.GetLastAccessTime().AsTime()) <= fresh {
			st.Pollers++
		}
	}
	return st, nil
}
