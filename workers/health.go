package workers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
)

// health serves /healthz (the process is alive), /readyz (it is connected to Temporal, polling,
// and not draining) for container orchestrators, and /metrics (Prometheus).
type health struct {
	client  atomic.Pointer[client.Client] // set once connected
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
	return mux
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
