package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/rabbit"
)

// ConsumerOptions configure the consumer; zero values mean the documented defaults.
type ConsumerOptions struct {
	RabbitMQ config.RabbitMQ
	// Prefetch is how many unacknowledged results RabbitMQ may send ahead (default 500).
	Prefetch int
	// BatchSize is how many results are appended with one fsync and acknowledged with one ack
	// (default Prefetch/2, so the broker keeps sending while a batch is written).
	BatchSize int
	// FlushInterval bounds how long a result waits for its batch to fill (default 20 ms).
	FlushInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts (100 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	// Name is the connection name shown in RabbitMQ's management UI.
	Name string
}

// DefaultPrefetch is the consumer's default prefetch count.
const DefaultPrefetch = 500

// DefaultFlushInterval is the longest a result waits for its batch. Long enough that a busy queue
// fills batches of about prefetch/2 (one fsync each), short enough not to be seen.
const DefaultFlushInterval = 20 * time.Millisecond

func (o *ConsumerOptions) defaults() {
	if o.RabbitMQ.Queue == "" {
		o.RabbitMQ.Queue = rabbit.DefaultQueue
	}
	if o.Prefetch <= 0 {
		o.Prefetch = DefaultPrefetch
	}
	if o.BatchSize <= 0 {
		o.BatchSize = max(1, o.Prefetch/2)
	}
	o.BatchSize = min(o.BatchSize, o.Prefetch) // a larger batch would never fill
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Name == "" {
		o.Name = "gpujobs-monitor"
	}
}

// Consumer moves results from the result queue into the store and the aggregates. A result is
// acknowledged only once it is fsynced (or known to be stored already). A message that is not a
// result, or a result that fails Validate, is dead-lettered: the consumer publishes it to the
// queue's dead-letter exchange with the reason in the x-gpujobs-reject-reason header, and acks
// it once the broker has confirmed the copy. When the connection drops, the unacknowledged
// messages go back to the queue, and the consumer reconnects with exponential backoff; the
// store's job-ID index makes their redelivery harmless.
type Consumer struct {
	opts    ConsumerOptions
	store   *Store
	agg     *Aggregator
	logger  *zap.Logger
	onBatch func()

	connected atomic.Bool
	ingested  atomic.Int64 // deliveries settled (stored, duplicate or dead-lettered)
}

// errStore marks a failure of the store: the consumer cannot go on without losing results.
var errStore = errors.New("store failed")

// errTopology marks a queue that exists with other arguments: retrying cannot fix it.
var errTopology = errors.New("result queue topology mismatch")

// NewConsumer returns a consumer; onBatch (may be nil) runs after each batch is counted.
func NewConsumer(opts ConsumerOptions, store *Store, agg *Aggregator, logger *zap.Logger, onBatch func()) *Consumer {
	opts.defaults()
	return &Consumer{opts: opts, store: store, agg: agg, logger: logger, onBatch: onBatch}
}

// Connected says whether the consumer is consuming right now.
func (c *Consumer) Connected() bool { return c.connected.Load() }

// Ingested returns how many deliveries the consumer has settled since it started.
func (c *Consumer) Ingested() int64 { return c.ingested.Load() }

// Run consumes until ctx ends (then it returns nil) or the store fails.
func (c *Consumer) Run(ctx context.Context) error {
	return rabbit.Reconnect(ctx, c.opts.MinBackoff, c.opts.MaxBackoff, c.session,
		func(err error) bool { return errors.Is(err, errStore) || errors.Is(err, errTopology) },
		func(err error, wait time.Duration) {
			c.logger.Warn("result queue unavailable, reconnecting", zap.Error(err), zap.Duration("backoff", wait))
		})
}

// session runs one connection; consumed says whether it got as far as consuming.
func (c *Consumer) session(ctx context.Context) (consumed bool, err error) {
	conn, err := rabbit.Dial(c.opts.RabbitMQ, c.opts.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := rabbit.Declare(ch, c.opts.RabbitMQ); err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
			return false, fmt.Errorf("%w: %w", errTopology, err)
		}
		return false, err
	}
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	if err := ch.Confirm(false); err != nil { // for the dead letters this channel publishes
		return false, fmt.Errorf("enable publisher confirms: %w", err)
	}
	queue := c.opts.RabbitMQ.Queue
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	c.connected.Store(true)
	if c.agg.metrics != nil {
		c.agg.metrics.connected.Set(1)
	}
	defer func() {
		c.connected.Store(false)
		if c.agg.metrics != nil {
			c.agg.metrics.connected.Set(0)
		}
	}()
	c.logger.Info("consuming results", zap.String("queue", queue), zap.Int("prefetch", c.opts.Prefetch),
		zap.Int("batch", c.opts.BatchSize), zap.String("url", config.Redact(c.opts.RabbitMQ.URL)))

	// The committer stores and acks one batch while this loop parses the next one; the channel's
	// one slot lets a full batch wait without stopping the parsing.
	commits := make(chan batch, 1)
	commitErr := make(chan error, 1)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		c.commit(ch, commits, commitErr)
	}()
	stopCommitter := func() {
		close(commits)
		<-committed
	}

	b := batch{recs: make([]Record, 0, c.opts.BatchSize)}
	send := func() error {
		if b.len() == 0 {
			return nil
		}
		select {
		case commits <- b:
		case err := <-commitErr:
			return err
		}
		b = batch{recs: make([]Record, 0, c.opts.BatchSize)}
		return nil
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// Store and acknowledge what was received; the rest goes back to the queue on close.
			err := send()
			stopCommitter()
			if err == nil {
				err = firstError(commitErr)
			}
			return true, err
		case err := <-commitErr:
			stopCommitter()
			return true, err
		case <-timer.C:
			if err := send(); err != nil {
				stopCommitter()
				return true, err
			}
		case d, ok := <-deliveries:
			if !ok {
				// Unacknowledged results (the unsent batch too) return to the queue. Batches
				// already handed over are stored; their acks fail, and their redelivery is
				// recognised as duplicates.
				stopCommitter()
				if err := firstError(commitErr); errors.Is(err, errStore) {
					return true, err
				}
				return true, errors.New("delivery channel closed: connection to RabbitMQ lost")
			}
			if b.len() == 0 {
				timer.Reset(c.opts.FlushInterval)
			}
			if rec, err := ParseRecordAt(d.Body, c.agg.now()); err != nil {
				b.dead = append(b.dead, deadLetter{d, err})
			} else {
				b.recs = append(b.recs, rec)
			}
			b.lastTag = d.DeliveryTag
			if b.len() >= c.opts.BatchSize {
				timer.Stop()
				if err := send(); err != nil {
					stopCommitter()
					return true, err
				}
			}
		}
	}
}

func firstError(errs chan error) error {
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// batch is what one fsync and one multiple-ack settle: results to store and messages to
// dead-letter, up to the delivery tag lastTag.
type batch struct {
	recs    []Record
	dead    []deadLetter
	lastTag uint64
}

func (b batch) len() int { return len(b.recs) + len(b.dead) }

type deadLetter struct {
	d      amqp.Delivery
	reason error
}

// commit handles batches in order until commits is closed. After an error (reported once on
// errs) it stores nothing more: the session is ending and the broker will redeliver.
func (c *Consumer) commit(ch *amqp.Channel, commits <-chan batch, errs chan<- error) {
	failed := false
	for b := range commits {
		if failed {
			continue
		}
		if err := c.flush(ch, b); err != nil {
			errs <- err
			failed = true
		}
	}
}

// flush dead-letters the batch's bad messages (waiting for the broker's confirms), appends its
// results to the store (one write, one fsync), counts what was new, keeps the counters beside
// the store when they changed, and then acknowledges every delivery up to the batch's last one.
func (c *Consumer) flush(ch *amqp.Channel, b batch) error {
	if err := c.deadLetterAll(ch, b.dead); err != nil {
		return err // nothing acked: the broker redelivers the batch
	}
	var added []Record
	if len(b.recs) > 0 {
		var err error
		if added, err = c.store.Append(b.recs); err != nil {
			return fmt.Errorf("%w: %w", errStore, err)
		}
	}
	dups := len(b.recs) - len(added)
	c.agg.AddRecords(added)
	c.agg.CountDuplicates(dups)
	if dups > 0 {
		c.logger.Debug("duplicate results not counted again", zap.Int("count", dups))
	}
	for _, dl := range b.dead {
		if errors.Is(dl.reason, ErrRejected) {
			c.agg.CountRejected()
		} else {
			c.agg.CountMalformed()
		}
	}
	if dups > 0 || len(b.dead) > 0 {
		if err := c.store.SaveCounters(c.agg.Counters()); err != nil {
			c.logger.Warn("counters not saved; a restart would undercount duplicates and dead letters", zap.Error(err))
		}
	}
	if c.agg.metrics != nil {
		c.agg.metrics.batches.Observe(float64(b.len()))
	}
	if c.onBatch != nil {
		c.onBatch()
	}
	if err := ch.Ack(b.lastTag, true); err != nil {
		// Stored already: the redelivery will be recognised as a duplicate.
		return fmt.Errorf("acknowledge %d messages: %w", b.len(), err)
	}
	c.ingested.Add(int64(b.len()))
	return nil
}

// RejectReasonHeader carries, on a dead-lettered message, why the monitor refused it;
// RejectKindHeader says "malformed" (not a result) or "rejected" (an invalid result), and
// RejectQueueHeader the queue it came from.
const (
	RejectReasonHeader = "x-gpujobs-reject-reason"
	RejectKindHeader   = "x-gpujobs-reject-kind"
	RejectQueueHeader  = "x-gpujobs-reject-queue"
)

// maxReasonBytes bounds the reason header.
const maxReasonBytes = 1000

// deadLetterAll publishes copies of the messages, with the reason, to the dead-letter exchange
// and waits until the broker has confirmed every one.
func (c *Consumer) deadLetterAll(ch *amqp.Channel, dead []deadLetter) error {
	return deadLetterTo(ch, c.opts.RabbitMQ.Queue, dead, c.logger)
}

// deadLetterTo dead-letters messages of queue (the result queue or the log queue).
func deadLetterTo(ch *amqp.Channel, queue string, dead []deadLetter, logger *zap.Logger) error {
	if len(dead) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(dead))
	for _, dl := range dead {
		d := dl.d
		kind := "malformed"
		if errors.Is(dl.reason, ErrRejected) || errors.Is(dl.reason, joblogs.ErrInvalid) {
			kind = "rejected"
		}
		reason := dl.reason.Error()
		if len(reason) > maxReasonBytes {
			reason = reason[:maxReasonBytes]
		}
		headers := amqp.Table{}
		for k, v := range d.Headers {
			headers[k] = v
		}
		headers[RejectReasonHeader], headers[RejectKindHeader], headers[RejectQueueHeader] = reason, kind, queue
		body := d.Body
		if len(body) > 200 {
			body = body[:200]
		}
		logger.Warn("dead-lettering a message", zap.String("kind", kind),
			zap.String("dead_letter_queue", rabbit.DeadLetterQueue(queue)),
			zap.String("message_id", d.MessageId), zap.String("reason", reason), zap.ByteString("body", body))
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, rabbit.DeadLetterExchange(queue), queue, false, false, amqp.Publishing{
			Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
			MessageId: d.MessageId, CorrelationId: d.CorrelationId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId,
			Body: d.Body,
		})
		if err != nil {
			return fmt.Errorf("dead-letter message %s: %w", d.MessageId, err)
		}
		confirms = append(confirms, dc)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("wait for the dead-letter queue's confirm: %w", err)
		}
		if !ok {
			return errors.New("the broker refused a dead letter (nack)")
		}
	}
	return nil
}
