package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/rabbit"
)

// LogConsumerOptions configure the log consumer; zero values mean the documented defaults.
type LogConsumerOptions struct {
	// RabbitMQ.Queue is the log queue (default log_queue).
	RabbitMQ config.RabbitMQ
	// Prefetch is how many unacknowledged log messages RabbitMQ may send ahead (default 64; a
	// message holds up to 256 lines).
	Prefetch int
	// FlushInterval bounds how long a message waits for its batch (default 20 ms).
	FlushInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts (100 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	Name                   string
}

// DefaultLogPrefetch is the log consumer's default prefetch.
const DefaultLogPrefetch = 64

func (o *LogConsumerOptions) defaults() {
	if o.RabbitMQ.Queue == "" {
		o.RabbitMQ.Queue = joblogs.DefaultQueue
	}
	if o.Prefetch <= 0 {
		o.Prefetch = DefaultLogPrefetch
	}
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
		o.Name = "gpujobs-monitor-logs"
	}
}

// LogConsumer moves job logs from the log queue into the LogStore. Like the result consumer it
// acknowledges a batch (one multiple-ack) only once the batch's lines are fsynced, dead-letters
// a message that fails joblogs.DecodeMessage to the queue's .dlq with the reason, and
// reconnects with backoff; the store's (job, attempt, seq) index drops redelivered lines.
type LogConsumer struct {
	opts    LogConsumerOptions
	store   *LogStore
	logger  *zap.Logger
	metrics *logMetrics
	now     func() time.Time

	connected atomic.Bool
	settled   atomic.Int64 // messages settled: stored, duplicate or dead-lettered
}

// NewLogConsumer returns a log consumer; metrics may be nil.
func NewLogConsumer(opts LogConsumerOptions, store *LogStore, metrics *Metrics, logger *zap.Logger) *LogConsumer {
	opts.defaults()
	c := &LogConsumer{opts: opts, store: store, logger: logger, now: time.Now}
	if metrics != nil {
		c.metrics = newLogMetrics(metrics.Registry, store)
		store.onEvict = func(string) { c.metrics.evicted.Inc() }
	}
	store.onCapped = func(jobID string) {
		logger.Warn("a job's log reached its bound; its further lines are dropped", zap.String("job_id", jobID), zap.Int64("bytes", store.maxJob))
	}
	return c
}

// Connected says whether the consumer is consuming right now.
func (c *LogConsumer) Connected() bool { return c.connected.Load() }

// Settled returns how many log messages the consumer has settled since it started.
func (c *LogConsumer) Settled() int64 { return c.settled.Load() }

// Run consumes until ctx ends (then it returns nil) or the store fails. A broker that is away,
// or a log queue declared with other arguments, is retried with backoff: logs must never stop
// the monitor's results.
func (c *LogConsumer) Run(ctx context.Context) error {
	return rabbit.Reconnect(ctx, c.opts.MinBackoff, c.opts.MaxBackoff, c.session,
		func(err error) bool { return errors.Is(err, errStore) },
		func(err error, wait time.Duration) {
			var aerr *amqp.Error
			if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
				c.logger.Error("the log queue exists with other arguments: delete it (it holds only logs) or fix LOG_QUEUE", zap.Error(err))
				return
			}
			c.logger.Warn("log queue unavailable, reconnecting", zap.Error(err), zap.Duration("backoff", wait))
		})
}

func (c *LogConsumer) setConnected(v bool) {
	c.connected.Store(v)
	if c.metrics != nil {
		c.metrics.connected.Set(map[bool]float64{true: 1}[v])
	}
}

func (c *LogConsumer) session(ctx context.Context) (consumed bool, err error) {
	conn, err := rabbit.Dial(c.opts.RabbitMQ, c.opts.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if err := joblogs.Declare(ch, c.opts.RabbitMQ); err != nil {
		return false, err
	}
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return false, fmt.Errorf("enable publisher confirms: %w", err)
	}
	queue := c.opts.RabbitMQ.Queue
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", queue, err)
	}
	c.setConnected(true)
	defer c.setConnected(false)
	c.logger.Info("consuming job logs", zap.String("queue", queue), zap.Int("prefetch", c.opts.Prefetch),
		zap.String("dir", c.store.Dir()), zap.String("url", config.Redact(c.opts.RabbitMQ.URL)))

	batchSize := max(1, c.opts.Prefetch/2)
	var b logBatch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, c.flush(ch, &b) // the rest goes back to the queue on close
		case <-timer.C:
			if err := c.flush(ch, &b); err != nil {
				return true, err
			}
		case d, ok := <-deliveries:
			if !ok {
				return true, errors.New("delivery channel closed: connection to RabbitMQ lost")
			}
			if b.n == 0 {
				timer.Reset(c.opts.FlushInterval)
			}
			if m, err := joblogs.DecodeMessage(d.Body, c.now()); err != nil {
				b.dead = append(b.dead, deadLetter{d, err})
			} else {
				b.msgs = append(b.msgs, m)
			}
			b.n++
			b.lastTag = d.DeliveryTag
			if b.n >= batchSize {
				timer.Stop()
				if err := c.flush(ch, &b); err != nil {
					return true, err
				}
			}
		}
	}
}

type logBatch struct {
	msgs    []joblogs.Message
	dead    []deadLetter
	n       int
	lastTag uint64
}

// flush dead-letters the batch's invalid messages, stores the rest (fsynced), and then acks
// every delivery up to the batch's last.
func (c *LogConsumer) flush(ch *amqp.Channel, b *logBatch) error {
	if b.n == 0 {
		return nil
	}
	defer func() { *b = logBatch{} }()
	if err := deadLetterTo(ch, c.opts.RabbitMQ.Queue, b.dead, c.logger); err != nil {
		return err // nothing acked: the broker redelivers the batch
	}
	got, err := c.store.Append(b.msgs)
	if err != nil {
		return fmt.Errorf("%w: %w", errStore, err)
	}
	if m := c.metrics; m != nil {
		m.lines.Add(float64(got.Lines))
		m.duplicates.Add(float64(got.Duplicates))
		m.capped.Add(float64(got.Capped))
		m.rejected.Add(float64(len(b.dead)))
	}
	if err := ch.Ack(b.lastTag, true); err != nil {
		return fmt.Errorf("acknowledge %d log messages: %w", b.n, err) // stored: redelivery is a duplicate
	}
	c.settled.Add(int64(b.n))
	return nil
}

// logMetrics are the log path's series in the monitor's registry.
type logMetrics struct {
	lines, duplicates, capped, rejected, evicted prometheus.Counter
	connected                                    prometheus.Gauge
}

func newLogMetrics(reg *prometheus.Registry, store *LogStore) *logMetrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	m := &logMetrics{
		lines:      counter("gpujobs_monitor_log_lines_total", "Job log lines stored."),
		duplicates: counter("gpujobs_monitor_log_duplicates_total", "Job log lines (and ends) delivered again and not stored twice."),
		capped:     counter("gpujobs_monitor_log_capped_lines_total", "Job log lines dropped because their job's log reached MONITOR_LOG_MAX_JOB."),
		rejected:   counter("gpujobs_monitor_log_rejected_total", "Log messages that failed validation, dead-lettered to the log queue's .dlq."),
		evicted:    counter("gpujobs_monitor_log_evicted_total", "Job logs deleted, oldest first, to keep all logs under MONITOR_LOG_MAX_TOTAL."),
		connected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "gpujobs_monitor_log_queue_connected", Help: "1 while the monitor consumes the log queue."}),
	}
	reg.MustRegister(m.connected, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gpujobs_monitor_log_bytes", Help: "Bytes all job logs use on disk.",
	}, func() float64 { return float64(store.Total()) }))
	return m
}
