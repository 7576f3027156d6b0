// Package monitor is gpujobs's results monitor: it consumes result_queue, keeps every distinct
// result in an fsynced JSON-lines store, computes exact aggregates (counts, processing-time
// statistics, rates, GPU-vs-CPU speedups, throughput, failures, fallbacks), and serves them as a
// JSON API, a live SSE stream, Prometheus metrics, an embedded dashboard, and Markdown/CSV/PNG
// reports.
//
// It must never lose or double-count a result: a result is acknowledged only after it is on disk,
// and the store's job-ID index makes redeliveries no-ops. No message may poison it: a result is
// validated (Validate) before it is stored and again when it is aggregated, so every aggregate
// stays finite, and what fails is dead-lettered with the reason. It is the only consumer of the
// result queue; everything else (tail, the dashboard) reads from it over HTTP. It does not
// publish results (only dead letters), and it never requeues a message it cannot read.
//
// It also consumes the log queue and keeps each job's log in a file of its own (LogStore),
// with the same rules: fsynced before the ack, duplicates dropped, bounded per job and in all.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// DefaultAddr is where serve listens: loopback only, unless a token protects the API.
const DefaultAddr = "127.0.0.1:8000"

// Options configure serve.
type Options struct {
	Addr      string // host:port of the HTTP API and dashboard
	StorePath string
	Consumer  ConsumerOptions
	Logs      LogOptions
	// Token, when set, is the bearer token that /api/... and /metrics require (RequireToken).
	// Without it serve listens on loopback only, unless InsecureNoAuth says an authenticating
	// proxy stands in front.
	Token          string
	InsecureNoAuth bool
	// Prices turn the usage's device-hours into cost (--price gpu=2.50,cpu=0.04).
	Prices Prices
	// SchedulerURL is a scheduler worker's health address, from which /api/queue fetches the
	// queued jobs' positions and predicted starts ("" : /api/queue says how to set it).
	SchedulerURL string
}

// Serve runs the monitor until ctx ends: it loads the store, then consumes the result queue and
// serves HTTP. It returns an error when the store fails or the address cannot be bound.
func Serve(ctx context.Context, o Options, logger *zap.Logger) error {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.StorePath == "" {
		o.StorePath = DefaultStorePath
	}
	if err := checkExposure(o.Addr, o.Token, o.InsecureNoAuth); err != nil {
		return err
	}
	metrics := NewMetrics()
	agg := NewAggregator(metrics)
	start := time.Now()
	store, st, err := OpenStore(o.StorePath, func(r Record) { agg.Add(r.Result) })
	if err != nil {
		return err
	}
	defer store.Close()
	agg.RestoreCounters(st.Counters)
	agg.SetRejectedAtLoad(st.NotLoaded())
	logger.Info("store loaded", zap.String("path", o.StorePath), zap.Int("results", st.Results),
		zap.Int("duplicate_lines", st.Duplicates), zap.Int("corrupt_lines", st.Corrupt), zap.Int("rejected_lines", st.Rejected),
		zap.Int64("torn_bytes_cut", st.Truncated), zap.Any("counters", st.Counters), zap.Duration("took", time.Since(start)))
	if st.CountersErr != nil {
		logger.Warn("counters not restored; duplicates, malformed and rejected count from zero", zap.Error(st.CountersErr))
	}
	if n := st.NotLoaded(); n > 0 {
		for _, s := range st.Skipped {
			logger.Warn("store line skipped: not a valid result", zap.Int("line", s.Line), zap.String("reason", s.Reason))
		}
		logger.Warn("store has lines that are not valid results; they are skipped and left in the file",
			zap.Int("lines", n), zap.Int("listed", len(st.Skipped)))
	}

	logStore, logConsumer, err := openLogs(o, metrics, logger)
	if err != nil {
		return err
	}
	defer logStore.Close()

	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	var consumer *Consumer
	srv := NewServer(agg, metrics, func() bool { return consumer.Connected() }, o.StorePath, logger)
	srv.SetLogs(logStore, logConsumer.Connected)
	if o.SchedulerURL != "" {
		srv.SetQueue(&QueueSource{URL: o.SchedulerURL})
	}
	agg.SetPrices(o.Prices)
	consumer = NewConsumer(o.Consumer, store, agg, logger, srv.Notify)
	handler := srv.Handler()
	if o.Token != "" {
		handler = RequireToken(handler, o.Token)
	}

	g, gctx := errgroup.WithContext(ctx)
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Streams end with the monitor: their request contexts derive from this one.
		BaseContext: func(net.Listener) context.Context { return gctx },
	}
	g.Go(func() error {
		logger.Info("monitor listening", zap.String("url", "http://"+ln.Addr().String()+"/"), zap.Bool("token_required", o.Token != ""))
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return httpSrv.Shutdown(sctx)
	})
	g.Go(func() error {
		if err := consumer.Run(gctx); err != nil {
			return err
		}
		return gctx.Err() // ctx ended: stop the HTTP side too
	})
	g.Go(func() error {
		if err := logConsumer.Run(gctx); err != nil {
			return err
		}
		return gctx.Err()
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	logger.Info("monitor stopped", zap.Int("results", agg.Len()), zap.Int64("settled_this_run", consumer.Ingested()))
	return err
}
