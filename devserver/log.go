package main

import (
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process's one logger, writing to stderr. "never" discards everything.
// The default level is warn because the server logs every service start and shard move at info.
func newLogger(level, format string) *zap.Logger {
	if level == "never" {
		return zap.NewNop()
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = zapcore.WarnLevel // parseArgs has validated the level; this is unreachable
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		MessageKey:     "msg",
		NameKey:        "logger",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	var encoder zapcore.Encoder
	if format == "json" {
		enc.EncodeLevel = zapcore.LowercaseLevelEncoder
		encoder = zapcore.NewJSONEncoder(enc)
	} else {
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.Lock(os.Stderr), lvl))
}

// quietable returns a logger that logs like l until quiet is called, and after that only panics.
// Stopping the server makes its services and internal SDK clients warn and err about calls
// cancelled and connections closed under them: an expected part of shutdown, not news, and a
// stop soon after start (a failed start) prints dozens of lines that bury the real error. At
// debug and info the user asked to see everything, so quiet does nothing there.
func quietable(l *zap.Logger) (logger *zap.Logger, quiet func()) {
	level := zapcore.LevelOf(l.Core())
	if level < zapcore.WarnLevel {
		return l, func() {}
	}
	gate := zap.NewAtomicLevelAt(level)
	core, err := zapcore.NewIncreaseLevelCore(l.Core(), gate)
	if err != nil {
		return l, func() {} // the gate starts at l's own level, so this cannot happen
	}
	return zap.New(core), func() { gate.SetLevel(zapcore.DPanicLevel) }
}
