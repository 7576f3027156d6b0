// Package temporalx dials Temporal the same way for every command, with the one zap logger
// adapted to the SDK.
package temporalx

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/log"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
)

// Dial connects to Temporal and checks the connection, so an unreachable server is one clear
// error rather than a hang at the first call.
func Dial(ctx context.Context, c config.Temporal, logger *zap.Logger) (client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := client.Options{
		HostPort:  c.Address,
		Namespace: c.Namespace,
		Logger:    Logger(logger.Named("temporal")),
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

// Logger adapts zap to the SDK's key-value logger.
func Logger(l *zap.Logger) log.Logger {
	return temporalLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

type temporalLogger struct{ s *zap.SugaredLogger }

func (t temporalLogger) Debug(msg string, kv ...any) { t.s.Debugw(msg, kv...) }
func (t temporalLogger) Info(msg string, kv ...any)  { t.s.Infow(msg, kv...) }
func (t temporalLogger) Warn(msg string, kv ...any)  { t.s.Warnw(msg, kv...) }
func (t temporalLogger) Error(msg string, kv ...any) { t.s.Errorw(msg, kv...) }

// With implements log.WithLogger, so workflow and activity loggers keep their tags.
func (t temporalLogger) With(kv ...any) log.Logger { return temporalLogger{t.s.With(kv...)} }
