package activities

import (
	"context"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// TemporalInspector asks Temporal's DescribeTaskQueue which workers poll a queue.
type TemporalInspector struct {
	Client client.Client
	// Freshness is how recently a poller must have polled to count as alive. Idle workers re-poll
	// about once a minute, and the server remembers a vanished worker for minutes, so the default
	// is 90s.
	Freshness time.Duration
}

func (t TemporalInspector) Inspect(ctx context.Context, queue string) (QueueState, error) {
	resp, err := t.Client.DescribeTaskQueue(ctx, queue, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return QueueState{}, err
	}
	fresh := t.Freshness
	if fresh <= 0 {
		fresh = 90 * time.Second
	}
	var st QueueState
	for _, p := range resp.GetPollers() {
		if time.Since(p.GetLastAccessTime().AsTime()) <= fresh {
			st.Pollers++
		}
	}
	return st, nil
}
