package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/gpujobs/gpujobs/jobs"
)

// Broker is where results go: the RabbitMQ publisher in production, a fake in unit tests.
type Broker interface {
	Publish(ctx context.Context, messageID string, body []byte) error
}

// Publisher is the PublishResult activity, run as a local activity first and, while the broker
// is away, as a regular one that the server retries (see workflows.JobWorkflow).
type Publisher struct {
	Broker Broker
	// Published, when set, sees every result once the broker has confirmed it; the scheduler
	// worker feeds its run-time model from it.
	Published func(jobs.Result)
	// Waiting, when set, is told how many jobs of this worker have a result the broker has not
	// taken yet (the gauge gpujobs_results_waiting_to_publish).
	Waiting func(n int)

	mu      sync.Mutex
	waiting map[string]time.Time // job ID → last failed attempt
}

// ErrBrokerUnavailable is the type of the (retried) error of a result the broker did not take.
const ErrBrokerUnavailable = "BrokerUnavailable"

// waitingExpiry drops a job from the waiting count when it has not been retried for this long
// (its workflow was terminated, or another scheduler worker took over its retries).
const waitingExpiry = 10 * time.Minute

// PublishResult sends the result as JSON with message_id = job ID and waits for the broker's
// confirm. Its error is one line, and retried by the workflow until the broker takes the result.
func (p *Publisher) PublishResult(ctx context.Context, res jobs.Result) error {
	body, err := json.Marshal(res)
	if err != nil {
		// A result that cannot be encoded never will be: retrying would wait forever.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("encode result %s: %v", res.JobID, err), "UnpublishableResult", nil)
	}
	if err := p.Broker.Publish(ctx, res.JobID, body); err != nil {
		p.track(res.JobID, true)
		return temporal.NewApplicationError(fmt.Sprintf("publish result of %s: %v", res.JobID, err), ErrBrokerUnavailable)
	}
	p.track(res.JobID, false)
	if p.Published != nil {
		p.Published(res)
	}
	return nil
}

// track updates the set of jobs whose result waits for the broker, and reports its size.
func (p *Publisher) track(jobID string, failed bool) {
	p.mu.Lock()
	if p.waiting == nil {
		p.waiting = map[string]time.Time{}
	}
	_, was := p.waiting[jobID]
	now := time.Now()
	if failed {
		p.waiting[jobID] = now
	} else {
		delete(p.waiting, jobID)
	}
	for id, at := range p.waiting {
		if now.Sub(at) > waitingExpiry {
			delete(p.waiting, id)
		}
	}
	n := len(p.waiting)
	p.mu.Unlock()
	if p.Waiting != nil && (failed || was) {
		p.Waiting(n)
	}
}
