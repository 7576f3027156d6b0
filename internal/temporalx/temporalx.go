// Package temporalx dials Temporal the same way for every command.
package temporalx

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/logging"
)

// Dial connects to Temporal and checks the connection, so an unreachable server is one clear
// error rather than a hang at the first call.
func Dial(ctx context.Context, c config.Temporal, logger *zap.Logger) (client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := client.Options{
		HostPort:  c.Address,
		Namespace: c.Namespace,
		Logger:    logging.Temporal(logger.Named("temporal")),
	}
	if c.TLS.Enabled() {
		tc, err := c.TLS.Config(c.Address)
		if err != nil {
			return nil, fmt.Errorf("Temporal TLS: %w", err)
		}
		opts.ConnectionOptions.TLS = tc
	}
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w; is the server running? (make dev starts one)", c.Address, c.Namespace, err)
	}
	return cl, nil
}
