// Package logging builds the one *zap.Logger each command uses and adapts it to the Temporal SDK.
package logging

import (
	"fmt"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gpujobs/gpujobs/internal/config"
)

// New builds a logger: JSON lines (zap's production encoder) for containers, coloured console
// lines for people.
func New(c config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", c.Level)
	}
	var zc zap.Config
	switch c.Format {
	case "json":
		zc = zap.NewProductionConfig()
	case "console", "":
		zc = zap.NewDevelopmentConfig()
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		zc.DisableStacktrace = true
		zc.Development = false
	default:
		return nil, fmt.Errorf("log format %q: use console or json", c.Format)
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.OutputPaths = []string{"stderr"}
	return zc.Build()
}

// Temporal adapts zap to the SDK's key-value logger.
func Temporal(l *zap.Logger) log.Logger {
	return temporalLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

type temporalLogger struct{ s *zap.SugaredLogger }

func (t temporalLogger) Debug(msg string, kv ...any) { t.s.Debugw(msg, kv...) }
func (t temporalLogger) Info(msg string, kv ...any)  { t.s.Infow(msg, kv...) }
func (t temporalLogger) Warn(msg string, kv ...any)  { t.s.Warnw(msg, kv...) }
func (t temporalLogger) Error(msg string, kv ...any) { t.s.Errorw(msg, kv...) }

// With implements log.WithLogger, so workflow and activity loggers keep their tags.
func (t temporalLogger) With(kv ...any) log.Logger { return temporalLogger{t.s.With(kv...)} }
