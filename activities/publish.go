package activities

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gpujobs/gpujobs/jobs"
)

// Broker is where results go: the RabbitMQ publisher in production, a fake in unit tests.
type Broker interface {
	Publish(ctx context.Context, messageID string, body []byte) error
}

// Publisher is the PublishResult local activity.
type Publisher struct {
	Broker Broker
	// Published, when set, sees every result once the broker has confirmed it; the scheduler
	// worker feeds its run-time model from it.
	Published func(jobs.Result)
}

// PublishResult sends the result as JSON with message_id = job ID and waits for the broker's
// confirm. An error is retried by the workflow.
func (p *Publisher) PublishResult(ctx context.Context, res jobs.Result) error {
	body, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result %s: %w", res.JobID, err)
	}
	if err := p.Broker.Publish(ctx, res.JobID, body); err != nil {
		return err
	}
	if p.Published != nil {
		p.Published(res)
	}
	return nil
}
