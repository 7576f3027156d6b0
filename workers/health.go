package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// health serves /healthz (the process is alive), /readyz (it is connected to Temporal, polling,
// and not draining) for container orchestrators, /metrics (Prometheus), and on a scheduler
// worker /api/queue (every queued job's position and predicted start and end, for the monitor).
type health struct {
	client  atomic.Pointer[client.Client] // set once connected
	queue   atomic.Pointer[queueSource]   // set by a scheduler worker
	polling atomic.Bool
	wedged  func() int64 // executing roles: kernels that would not stop
	// consuming, when set, must also hold for readiness (the bridge: consuming its queue).
	consuming func() bool
	metrics   *prometheus.Registry
}

func newHealth() *health {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &health{metrics: reg}
}

func (h *health) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		c := h.client.Load()
		if c == nil {
			http.Error(w, "not connected to Temporal yet", http.StatusServiceUnavailable)
			return
		}
		if !h.polling.Load() {
			http.Error(w, "not polling (starting or draining)", http.StatusServiceUnavailable)
			return
		}
		if h.wedged != nil && h.wedged() > 0 {
			http.Error(w, fmt.Sprintf("%d stalled kernel(s) did not stop: restart the worker", h.wedged()), http.StatusServiceUnavailable)
			return
		}
		if h.consuming != nil && !h.consuming() {
			http.Error(w, "not consuming the job queue (RabbitMQ unreachable?)", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := (*c).CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			http.Error(w, "Temporal unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/queue", func(w http.ResponseWriter, r *http.Request) {
		q := h.queue.Load()
		if q == nil {
			http.Error(w, "no queue predictions here: a scheduler worker serves them, once it polls", http.StatusNotFound)
			return
		}
		snap, err := q.snapshot(r.Context())
		if err != nil {
			http.Error(w, "queue predictions: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		body, err := json.Marshal(snap)
		if err != nil {
			http.Error(w, "encode queue predictions: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(body, '\n')) //nolint:errcheck // the client went away
	})
	return mux
}

// queueCacheFor is how long one queue snapshot answers: computing it queries every open job's
// workflow, so a dashboard polling every second costs one computation per interval, not one
// per viewer.
const queueCacheFor = 2 * time.Second

// queueSource computes queue snapshots from Temporal, one at a time, and keeps the last one for
// queueCacheFor.
type queueSource struct {
	c         client.Client
	namespace string
	group     singleflight.Group

	mu     sync.Mutex
	last   jobs.QueueSnapshot
	lastAt time.Time
}

func (q *queueSource) snapshot(ctx context.Context) (jobs.QueueSnapshot, error) {
	q.mu.Lock()
	if !q.lastAt.IsZero() && time.Since(q.lastAt) < queueCacheFor {
		s := q.last
		q.mu.Unlock()
		return s, nil
	}
	q.mu.Unlock()
	ch := q.group.DoChan("", func() (any, error) {
		// Not the first caller's context: the callers that joined it would fail with it.
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := jobclient.Snapshot(sctx, q.c, q.namespace, time.Now())
		if err == nil {
			q.mu.Lock()
			q.last, q.lastAt = s, time.Now()
			q.mu.Unlock()
		}
		return s, err
	})
	select {
	case <-ctx.Done():
		return jobs.QueueSnapshot{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return jobs.QueueSnapshot{}, r.Err
		}
		return r.Val.(jobs.QueueSnapshot), nil
	}
}

// serve listens on addr until ctx is done; an empty addr serves nothing.
func (h *health) serve(addr string, logger *zap.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("health endpoint stopped", zap.Error(err))
		}
	}()
	logger.Info("health endpoints up", zap.String("addr", ln.Addr().String()))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // best effort on the way out
		<-done
	}, nil
}
