// Package rabbit owns gpujobs's RabbitMQ topology and the result publisher. Every component that
// declares result_queue does it through Declare, so the queue's arguments (dead-lettering, queue
// type) are the same everywhere: RabbitMQ refuses a redeclaration with different arguments.
package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
)

// DefaultQueue receives one message per finished job (completed, failed or canceled). Tests and
// parallel deployments sharing a broker use other names (config.RabbitMQ.Queue).
const DefaultQueue = "result_queue"

// DeadLetterExchange and DeadLetterQueue receive the results the monitor rejects as malformed,
// so a poison message is kept for inspection and never redelivered in a loop.
func DeadLetterExchange(queue string) string { return queue + ".dlx" }

// DeadLetterQueue is where queue's rejected messages end up.
func DeadLetterQueue(queue string) string { return queue + ".dlq" }

// Dial connects to RabbitMQ with a connection name that shows in the management UI.
func Dial(c config.RabbitMQ, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp.Config{Properties: props, Heartbeat: 10 * time.Second}
	if c.TLS.Enabled() {
		u, err := amqp.ParseURI(c.URL)
		if err != nil {
			return nil, fmt.Errorf("RabbitMQ URL %s: %w", config.Redact(c.URL), err)
		}
		if cfg.TLSClientConfig, err = c.TLS.Config(net.JoinHostPort(u.Host, fmt.Sprint(u.Port))); err != nil {
			return nil, fmt.Errorf("RabbitMQ TLS: %w", err)
		}
	}
	conn, err := amqp.DialConfig(c.URL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to RabbitMQ at %s: %w", config.Redact(c.URL), err)
	}
	return conn, nil
}

// Declare creates (or checks) the result queue and its dead-letter queue. c.QueueType is
// "classic" or "quorum"; a RabbitMQ cluster should use quorum queues.
func Declare(ch *amqp.Channel, c config.RabbitMQ) error { return DeclareWith(ch, c, nil) }

// DeclareWith is Declare with more arguments for the queue c.Queue (not its dead-letter queue),
// such as a length limit. Every declarer of that queue must pass the same ones.
func DeclareWith(ch *amqp.Channel, c config.RabbitMQ, extra amqp.Table) error {
	queue, queueType := c.Queue, c.QueueType
	if queue == "" {
		queue = DefaultQueue
	}
	dlx, dlq := DeadLetterExchange(queue), DeadLetterQueue(queue)
	switch queueType {
	case "", "classic", "quorum":
	default:
		return fmt.Errorf("queue type %q: use classic or quorum", queueType)
	}
	if queueType == "" {
		queueType = "classic"
	}
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dlx, err)
	}
	qargs := amqp.Table{amqp.QueueTypeArg: queueType}
	if _, err := ch.QueueDeclare(dlq, true, false, false, false, qargs); err != nil {
		return fmt.Errorf("declare queue %s: %w", dlq, err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", dlq, err)
	}
	args := amqp.Table{amqp.QueueTypeArg: queueType, "x-dead-letter-exchange": dlx}
	for k, v := range extra {
		args[k] = v
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s (declared elsewhere with other arguments? delete it or match RABBITMQ_QUEUE_TYPE): %w", queue, err)
	}
	return nil
}

// Publisher publishes results as persistent messages and waits for the broker's confirm, so a
// result counts as published only once RabbitMQ has taken responsibility for it. It reconnects
// lazily: the first publish after a broken connection dials again. Publishes from many
// goroutines share one channel and wait for their confirms side by side (the broker confirms
// the messages of one disk sync together), so a burst of finishing jobs is not published one
// round trip at a time.
type Publisher struct {
	cfg    config.RabbitMQ
	name   string
	logger *zap.Logger

	inflight chan struct{} // a slot per publish waiting for its confirm (maxInFlight)

	mu      sync.Mutex
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	// returned holds the returns drained from returns, by message ID, until their publisher
	// looks (messages of one channel; cleared with it).
	returned map[string]amqp.Return
	// dialErr and dialedAt remember the last failed connection attempt: while the broker is
	// away, the results waiting for it fail at once instead of each dialing again.
	dialErr  error
	dialedAt time.Time
}

// maxInFlight bounds the publishes waiting for a confirm at once. The returns channel holds as
// many, so the client's dispatch of a return never blocks on it.
const maxInFlight = 256

// redialEvery is the least time between two connection attempts while the broker is away.
const redialEvery = time.Second

// NewPublisher returns a publisher; it connects on first use.
func NewPublisher(cfg config.RabbitMQ, name string, logger *zap.Logger) *Publisher {
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	return &Publisher{cfg: cfg, name: name, logger: logger, inflight: make(chan struct{}, maxInFlight)}
}

// ErrNotRouted means the broker accepted the message but no queue took it.
var ErrNotRouted = errors.New("message not routed to any queue")

// Publish sends body to the result queue with message_id id and waits for the broker's confirm.
// It is safe for concurrent use.
func (p *Publisher) Publish(ctx context.Context, id string, body []byte) error {
	select {
	case p.inflight <- struct{}{}:
		defer func() { <-p.inflight }()
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", id, ctx.Err())
	}
	p.mu.Lock()
	if err := p.connect(); err != nil {
		p.mu.Unlock()
		return err
	}
	ch := p.ch
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", p.cfg.Queue, true, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    time.Now(),
		Type:         "gpujobs.result",
		Body:         body,
	})
	if err != nil {
		p.resetIf(ch)
		p.mu.Unlock()
		return fmt.Errorf("publish %s: %w", id, err)
	}
	p.mu.Unlock()
	// A late confirm resolves dc harmlessly: the channel stays, for the other publishes on it.
	acked, err := dc.WaitContext(ctx)
	// A channel that closed before the confirm is replaced by the next connect.
	p.mu.Lock()
	ret, wasReturned := p.takeReturn(ch, id)
	p.mu.Unlock()
	switch {
	case err != nil:
		return fmt.Errorf("wait for confirm of %s: %w", id, err)
	case !acked:
		return fmt.Errorf("broker refused %s (nack, or the channel closed before its confirm)", id)
	case wasReturned:
		// A mandatory message that no queue took is returned before it is acked.
		return fmt.Errorf("publish %s: %w (%d %s)", ret.MessageId, ErrNotRouted, ret.ReplyCode, ret.ReplyText)
	}
	return nil
}

// takeReturn drains the returns that ch's client has dispatched so far and takes id's, if it
// was returned. The client sends a return to p.returns before it resolves the message's
// confirm, so after the confirm it is there. Called with p.mu held.
func (p *Publisher) takeReturn(ch *amqp.Channel, id string) (amqp.Return, bool) {
	if ch != p.ch {
		return amqp.Return{}, false // that channel's returns went with it
	}
	for drained := false; !drained; {
		select {
		case r, ok := <-p.returns:
			if !ok {
				drained = true
				break
			}
			if len(p.returned) >= maxInFlight { // returns of publishes that gave up waiting
				clear(p.returned)
			}
			p.returned[r.MessageId] = r
		default:
			drained = true
		}
	}
	r, ok := p.returned[id]
	delete(p.returned, id)
	return r, ok
}

// resetIf closes the connection if ch is still the current channel (a publish that failed on
// an older one must not close the newer). Called with p.mu held.
func (p *Publisher) resetIf(ch *amqp.Channel) {
	if ch == p.ch {
		p.reset()
	}
}

func (p *Publisher) connect() error {
	if p.ch != nil && !p.ch.IsClosed() && !p.conn.IsClosed() {
		return nil
	}
	p.reset()
	if p.dialErr != nil && time.Since(p.dialedAt) < redialEvery {
		return p.dialErr
	}
	p.dialedAt = time.Now()
	conn, err := Dial(p.cfg, p.name)
	if err != nil {
		p.dialErr = err
		return err
	}
	p.dialErr = nil
	ch, err := conn.Channel()
	if err == nil {
		err = Declare(ch, p.cfg)
	}
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("set up publishing channel: %w", err)
	}
	p.conn, p.ch = conn, ch
	p.returns = ch.NotifyReturn(make(chan amqp.Return, maxInFlight))
	p.returned = map[string]amqp.Return{}
	p.logger.Info("connected to RabbitMQ", zap.String("url", config.Redact(p.cfg.URL)))
	return nil
}

func (p *Publisher) reset() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch, p.returns, p.returned = nil, nil, nil, nil
}

// Close closes the connection.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
}
