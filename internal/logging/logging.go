// Package logging builds the one *zap.Logger each command uses (internal/temporalx adapts it to
// the Temporal SDK, so a command that does not talk to Temporal does not link the SDK).
package logging

import (
	"fmt"

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
