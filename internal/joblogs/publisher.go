package joblogs

import (
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/rabbit"
)

// QueueMaxBytes bounds what the log queue holds while the monitor is away: past it the broker
// refuses new log messages (x-overflow reject-publish), the Writers buffer and then drop with a
// notice, and the broker's disk and the results queue stay safe. Every declarer passes the same
// arguments (RabbitMQ refuses a redeclaration with others), so it is a constant.
const QueueMaxBytes = 1 << 30

// QueueArgs are the log queue's arguments beside those of internal/rabbit.
func QueueArgs() amqp.Table {
	return amqp.Table{"x-max-length-bytes": int64(QueueMaxBytes), "x-overflow": "reject-publish"}
}

// Declare creates (or checks) the log queue cfg.Queue (DefaultQueue when empty), durable, with its
// dead-letter exchange and queue as internal/rabbit declares them for the result queue.
func Declare(ch *amqp.Channel, cfg config.RabbitMQ) error {
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	return rabbit.DeclareWith(ch, cfg, QueueArgs())
}

// QueueFlag registers --log-queue (env LOG_QUEUE, default log_queue) into p.
func QueueFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "log-queue", config.Env("LOG_QUEUE", DefaultQueue), "name of the durable queue that carries jobs' log lines to the monitor (env LOG_QUEUE)")
}

// Publisher holds one worker process's connection to the log queue; each job attempt writes
// through its own Writer (and AMQP channel) on it. It connects lazily and again after the
// connection broke, at most once a second while the broker is away. Safe for concurrent use.
type Publisher struct {
	cfg    config.RabbitMQ
	name   string
	logger *zap.Logger

	mu       sync.Mutex
	conn     *amqp.Connection
	closed   bool
	dialErr  error
	dialedAt time.Time
}

// NewPublisher returns a publisher to the log queue cfg.Queue (DefaultQueue when empty); name
// is the connection's name in RabbitMQ's management UI. It connects on first use.
func NewPublisher(cfg config.RabbitMQ, name string, logger *zap.Logger) *Publisher {
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Publisher{cfg: cfg, name: name, logger: logger}
}

// errClosed is what a Writer gets once its Publisher is closed.
var errClosed = errors.New("log publisher closed")

// Close closes the connection. Close the Writers first: lines they had not sent are lost.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn = nil
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	return err
}

// channel opens a confirming channel for one Writer, connecting (and declaring the queue) first
// when needed.
func (p *Publisher) channel() (*amqp.Channel, chan amqp.Return, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, errClosed
	}
	if p.conn == nil || p.conn.IsClosed() {
		if p.dialErr != nil && time.Since(p.dialedAt) < time.Second {
			return nil, nil, p.dialErr
		}
		p.dialedAt = time.Now()
		conn, err := rabbit.Dial(p.cfg, p.name)
		if err == nil {
			err = declareOn(conn, p.cfg)
			if err != nil {
				conn.Close()
			}
		}
		if err != nil {
			p.dialErr = err
			return nil, nil, err
		}
		p.dialErr, p.conn = nil, conn
		p.logger.Info("log publisher connected to RabbitMQ", zap.String("queue", p.cfg.Queue), zap.String("url", config.Redact(p.cfg.URL)))
	}
	ch, err := p.conn.Channel()
	if err == nil {
		if err = ch.Confirm(false); err != nil {
			ch.Close()
		}
	}
	if err != nil {
		p.conn.Close()
		p.conn = nil
		return nil, nil, fmt.Errorf("open a log channel: %w", err)
	}
	// One message is in flight per channel, so one return at most is pending; the Writer reads it.
	return ch, ch.NotifyReturn(make(chan amqp.Return, 4)), nil
}

func declareOn(conn *amqp.Connection, cfg config.RabbitMQ) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	return Declare(ch, cfg)
}
