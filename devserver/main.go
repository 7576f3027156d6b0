// Command devserver runs a single-node Temporal server (frontend, history, matching and worker
// services, SQLite persistence) and the Temporal Web UI in one process, for developing and testing
// gpujobs on a machine with no Docker and no temporal CLI.
//
// It takes the command line of `temporal server start-dev`, so the Go SDK's
// testsuite.StartDevServer can run it through DevServerOptions.ExistingPath. It is its own Go
// module and must not import the gpujobs app module: the server and the app's SDK need
// incompatible versions of go.temporal.io/api, so the two talk over gRPC only. The dev server is
// not for production: one history shard, no TLS, no authorization.
//
// Two more command lines run the server and the UI as their container images do, for the
// cluster test (internal/cluster): `devserver server start` is `temporal-server start` (the
// embedded config template filled from the environment; PostgreSQL persistence), and `devserver
// ui start` is the temporalio/ui image's ui-server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if mode := productionMode(os.Args[1:]); mode != nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := mode(ctx)
		stop()
		os.Exit(exitCode(err))
	}
	cfg, err := parseArgs(os.Args[1:], os.Stdout)
	if err == nil {
		logger := newLogger(cfg.LogLevel, cfg.LogFormat)
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx, cfg, logger, os.Stdout)
		stop()
		_ = logger.Sync()
	}
	os.Exit(exitCode(err))
}

// exitCode reports err on stderr and maps it to the exit status: 0 for none (and for --help),
// 2 for a bad command line, 1 for anything else.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "devserver:", err)
		return 2
	default:
		fmt.Fprintln(os.Stderr, "devserver:", err)
		return 1
	}
}
