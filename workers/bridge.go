package workers

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/bridge"
)

// RoleBridge consumes the original system's RabbitMQ job queue and starts each message as a job.
const RoleBridge = "bridge"

// BridgeOptions configure the bridge role.
type BridgeOptions struct {
	// Queue is the RabbitMQ queue the original clients publish jobs to (default job_queue).
	Queue string
	// Prefetch is how many messages are being started at once (default 32).
	Prefetch int

	metrics *bridge.Metrics // registered with the health endpoint's /metrics
}

// runBridge consumes the job queue until ctx is done. It is ready while it consumes.
func runBridge(ctx context.Context, c client.Client, o Options, h *health, logger *zap.Logger) error {
	b := bridge.New(bridge.Options{
		RabbitMQ: o.RabbitMQ, Queue: o.Bridge.Queue, Prefetch: o.Bridge.Prefetch, Kinds: o.Kinds,
		Name: "gpujobs-bridge " + o.WorkerID,
	}, c, o.Bridge.metrics, logger.Named("bridge"))
	h.consuming = b.Consuming
	h.polling.Store(true)
	defer h.polling.Store(false)
	if err := b.Run(ctx); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	logger.Info("bridge stopped")
	return nil
}
