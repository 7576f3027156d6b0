// Package bridge keeps the original system's producers working: it consumes the RabbitMQ queue
// they publish jobs to (job_queue), and starts each message as a JobWorkflow through the
// starter's own code path (internal/jobclient).
//
// A message is acknowledged only after Temporal has accepted the start, or has said that the job
// exists already: its job ID is derived from the message (job_id, message_id or a hash of the
// body) and started with the reject-duplicate policy, so a message redelivered after a crash
// never starts a job twice. A message that cannot be a job is dead-lettered to <queue>.dlq with
// the reason in the x-gpujobs-reason header, and counted; it is never requeued in a loop.
//
// The bridge declares the job queue exactly as the original clients do (durable, no arguments),
// since RabbitMQ refuses a redeclaration with other arguments (PRECONDITION_FAILED). So the
// dead-lettering cannot be a queue argument; the bridge does it itself, publishing the message
// to <queue>.dlx (a fanout exchange bound to <queue>.dlq) and acknowledging the original in one
// AMQP transaction: a bridge killed in between leaves the message in exactly one of the queues.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/jobs"
)

// DefaultQueue is the queue the original system's document names; its clients' code uses
// gpu_jobs, hence the --job-queue setting.
const DefaultQueue = "job_queue"

// DefaultPrefetch is how many messages are in flight (being started) at once by default.
const DefaultPrefetch = 32

// Headers of a dead-lettered message, besides the original's own.
const (
	HeaderReason = "x-gpujobs-reason" // "<reason>: <message>", e.g. "invalid_params: matrix_multiply: invalid size: ..."
	HeaderQueue  = "x-gpujobs-queue"  // the queue the message came from
	HeaderJobID  = "x-gpujobs-job-id" // the job ID the message would have had
	HeaderTime   = "x-gpujobs-dead-lettered-at"
)

// Options configure the bridge; zero values mean the documented defaults.
type Options struct {
	RabbitMQ config.RabbitMQ // URL and TLS; the result queue settings are not used
	Queue    string          // default DefaultQueue
	Prefetch int             // default DefaultPrefetch
	Kinds    *jobs.Kinds     // the kinds a message may name (the worker binary's)
	// Location reads submit_time values without a zone (default time.Local).
	Location *time.Location
	// MinBackoff and MaxBackoff bound the waits between reconnections and between retries of a
	// start that Temporal could not take (100 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	// Grace is how long, once stopping, starts in flight may take before they are abandoned
	// (their messages are redelivered). Default 10 s.
	Grace time.Duration
	Name  string // connection name
}

// DeadLetterExchange and DeadLetterQueue are where queue's invalid messages go.
func DeadLetterExchange(queue string) string { return rabbit.DeadLetterExchange(queue) }

// DeadLetterQueue is where queue's invalid messages end up.
func DeadLetterQueue(queue string) string { return rabbit.DeadLetterQueue(queue) }

// Bridge moves jobs from RabbitMQ into Temporal.
type Bridge struct {
	opts    Options
	client  client.Client
	logger  *zap.Logger
	metrics *Metrics

	consuming atomic.Bool
}

// New returns a bridge that starts jobs with c; metrics may be nil.
func New(o Options, c client.Client, metrics *Metrics, logger *zap.Logger) *Bridge {
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.Prefetch <= 0 {
		o.Prefetch = DefaultPrefetch
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.Name == "" {
		o.Name = "gpujobs-bridge"
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Bridge{opts: o, client: c, logger: logger, metrics: metrics}
}

// Consuming says whether the bridge is consuming right now.
func (b *Bridge) Consuming() bool { return b.consuming.Load() }

// errTopology marks a queue that exists with other arguments: retrying cannot fix it.
var errTopology = errors.New("job queue topology mismatch")

// Run consumes until ctx ends, reconnecting with exponential backoff when RabbitMQ goes away.
func (b *Bridge) Run(ctx context.Context) error {
	return rabbit.Reconnect(ctx, b.opts.MinBackoff, b.opts.MaxBackoff, b.session,
		func(err error) bool { return errors.Is(err, errTopology) },
		func(err error, wait time.Duration) {
			b.logger.Warn("job queue unavailable, reconnecting", zap.String("queue", b.opts.Queue), zap.Error(err), zap.Duration("backoff", wait))
		})
}

// Declare declares the job queue as the original clients do (durable, no arguments) and the
// dead-letter exchange and queue.
func Declare(ch *amqp.Channel, queue string) error {
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s durable without arguments, as the original clients do (declared elsewhere with arguments? delete it): %w", queue, err)
	}
	dlx, dlq := DeadLetterExchange(queue), DeadLetterQueue(queue)
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dlq, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", dlq, err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		return fmt.Errorf("bind %s to %s: %w", dlq, dlx, err)
	}
	return nil
}

// session runs one connection; consumed says whether it got as far as consuming.
func (b *Bridge) session(ctx context.Context) (consumed bool, err error) {
	conn, err := rabbit.Dial(b.opts.RabbitMQ, b.opts.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := Declare(ch, b.opts.Queue); err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
			return false, fmt.Errorf("%w: %w", errTopology, err)
		}
		return false, err
	}
	// Acks and dead letters are transactional, so a dead letter and the ack of its original
	// happen together or not at all.
	if err := ch.Tx(); err != nil {
		return false, fmt.Errorf("select transactions: %w", err)
	}
	if err := ch.Qos(b.opts.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	const tag = "gpujobs-bridge"
	deliveries, err := ch.Consume(b.opts.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", b.opts.Queue, err)
	}
	b.consuming.Store(true)
	b.metrics.connected.Set(1)
	defer func() {
		b.consuming.Store(false)
		b.metrics.connected.Set(0)
	}()
	b.logger.Info("consuming jobs", zap.String("queue", b.opts.Queue), zap.Int("prefetch", b.opts.Prefetch),
		zap.String("dead_letter_queue", DeadLetterQueue(b.opts.Queue)), zap.String("url", config.Redact(b.opts.RabbitMQ.URL)))

	// Starts in flight get Grace to finish once ctx ends; their messages are settled on this
	// channel, which stays open until they have. Messages not yet handled go back to the queue
	// when the connection closes.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	s := &settler{ch: ch}
	var wg sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			ch.Cancel(tag, false) //nolint:errcheck // the connection closes next anyway
			timer := time.AfterFunc(b.opts.Grace, cancelWork)
			wg.Wait()
			timer.Stop()
			return true, nil
		case d, ok := <-deliveries:
			if !ok {
				cancelWork()
				wg.Wait()
				return true, errors.New("delivery channel closed: connection to RabbitMQ lost")
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.handle(work, s, d)
			}()
		}
	}
}

// settler serializes what is done on the transactional channel: each settlement is one
// transaction, so another goroutine's commit never carries half of it.
type settler struct {
	mu sync.Mutex
	ch *amqp.Channel
}

func (s *settler) ack(tag uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ch.Ack(tag, false); err != nil {
		return err
	}
	return s.ch.TxCommit()
}

func (s *settler) deadLetter(ctx context.Context, exchange string, msg amqp.Publishing, tag uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ch.PublishWithContext(ctx, exchange, "", false, false, msg); err != nil {
		return err
	}
	if err := s.ch.Ack(tag, false); err != nil {
		return err
	}
	return s.ch.TxCommit()
}

// handle turns one delivery into a job start or a dead letter, and settles it. A start that
// Temporal cannot take now is retried until it can or the bridge stops; the message is then left
// unacknowledged and RabbitMQ redelivers it.
func (b *Bridge) handle(ctx context.Context, s *settler, d amqp.Delivery) {
	p, err := Parse(Message{Body: d.Body, MessageID: d.MessageId, Timestamp: d.Timestamp}, b.opts.Kinds, b.opts.Location, time.Now())
	if err == nil {
		err = b.start(ctx, p)
	}
	var inv *InvalidError
	switch {
	case err == nil, errors.Is(err, jobclient.ErrJobExists):
		outcome := OutcomeStarted
		if err != nil {
			outcome = OutcomeDuplicate
		}
		if aerr := s.ack(d.DeliveryTag); aerr != nil {
			b.logger.Warn("ack failed; the message will be redelivered and recognised as a duplicate",
				zap.String("job_id", p.Request.JobID), zap.Error(aerr))
			return
		}
		b.metrics.messages.WithLabelValues(outcome).Inc()
		fields := []zap.Field{zap.String("job_id", p.Request.JobID), zap.String("job_type", p.Request.JobType), zap.String("id_from", p.IDSource)}
		if p.OriginalID != "" {
			fields = append(fields, zap.String("original_id", p.OriginalID))
		}
		if outcome == OutcomeDuplicate {
			b.logger.Info("job exists already: message acknowledged, nothing started", fields...)
		} else {
			b.logger.Debug("job started", fields...)
		}
	case errors.As(err, &inv):
		b.deadLetter(ctx, s, d, p, inv)
	default:
		b.logger.Info("start abandoned while stopping; the message will be redelivered", zap.String("job_id", p.Request.JobID), zap.Error(err))
	}
}

// start submits the job, retrying while Temporal is unavailable. Temporal's InvalidArgument (a
// request it will never take, e.g. too large) makes the message invalid.
func (b *Bridge) start(ctx context.Context, p Parsed) error {
	backoff := b.opts.MinBackoff
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := jobclient.Submit(sctx, b.client, p.Request)
		cancel()
		var badArg *serviceerror.InvalidArgument
		switch {
		case err == nil, errors.Is(err, jobclient.ErrJobExists):
			return err
		case errors.As(err, &badArg):
			return &InvalidError{Reason: ReasonRefused, Err: err}
		case ctx.Err() != nil:
			return ctx.Err()
		}
		b.metrics.startRetries.Inc()
		b.logger.Warn("Temporal did not take the start, retrying", zap.String("job_id", p.Request.JobID), zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, b.opts.MaxBackoff)
	}
}

// deadLetter moves the message to the dead-letter queue with the reason in a header.
func (b *Bridge) deadLetter(ctx context.Context, s *settler, d amqp.Delivery, p Parsed, inv *InvalidError) {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = inv.Error()
	headers[HeaderQueue] = b.opts.Queue
	headers[HeaderTime] = time.Now().UTC().Format(time.RFC3339Nano)
	if p.Request.JobID != "" {
		headers[HeaderJobID] = p.Request.JobID
	}
	msg := amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
		MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, UserId: d.UserId, AppId: d.AppId, Body: d.Body,
	}
	body := d.Body
	if len(body) > 200 {
		body = body[:200]
	}
	if err := s.deadLetter(ctx, DeadLetterExchange(b.opts.Queue), msg, d.DeliveryTag); err != nil {
		b.logger.Warn("dead-lettering failed; the message will be redelivered", zap.String("reason", inv.Reason), zap.Error(err))
		return
	}
	b.metrics.messages.WithLabelValues(OutcomeDeadLettered).Inc()
	b.metrics.deadLetters.WithLabelValues(inv.Reason).Inc()
	b.logger.Warn("message dead-lettered: it cannot be a job",
		zap.String("reason", inv.Reason), zap.Error(inv.Err), zap.String("dead_letter_queue", DeadLetterQueue(b.opts.Queue)),
		zap.String("message_id", d.MessageId), zap.ByteString("body", body))
}

// Outcomes of a message, the label of gpujobs_bridge_messages_total.
const (
	OutcomeStarted      = "started"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
)

// Metrics are the bridge's Prometheus metrics.
type Metrics struct {
	messages     *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	startRetries prometheus.Counter
	connected    prometheus.Gauge
}

// NewMetrics registers the bridge's metrics with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gpujobs_bridge_messages_total",
			Help: "Messages settled by the bridge, by outcome: started (a job), duplicate (its job existed), dead_lettered."}, []string{"outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gpujobs_bridge_dead_letters_total",
			Help: "Messages dead-lettered because they cannot be jobs, by reason."}, []string{"reason"}),
		startRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "gpujobs_bridge_start_retries_total",
			Help: "Starts that Temporal could not take at once and were retried."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gpujobs_bridge_rabbitmq_connected",
			Help: "1 while the bridge consumes the job queue."}),
	}
	for _, o := range []string{OutcomeStarted, OutcomeDuplicate, OutcomeDeadLettered} {
		m.messages.WithLabelValues(o)
	}
	for _, r := range Reasons {
		m.deadLetters.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.deadLetters, m.startRetries, m.connected)
	}
	return m
}
