// Package e2e runs gpujobs end to end: the real dev server (bin/devserver, in memory), a real
// RabbitMQ, and the real worker, starter and monitor binaries from bin/, as a user runs them.
//
// The tests run when GPUJOBS_E2E=1 (make test sets it, after building bin/ and starting
// RabbitMQ); otherwise they skip, so a plain `go test ./...` works on a bare machine.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/testsuite"

	"github.com/gpujobs/gpujobs/internal/testutil"
)

var env *environment

func TestMain(m *testing.M) {
	if os.Getenv("GPUJOBS_E2E") != "1" {
		fmt.Println("e2e: skipped (set GPUJOBS_E2E=1, or run make test, to run against a real dev server and RabbitMQ)")
		os.Exit(0)
	}
	var err error
	env, err = start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	env.stop()
	os.Exit(code)
}

// environment is one dev server and one result queue shared by the tests of this package.
type environment struct {
	bin         string // directory with worker, starter, monitor, devserver
	server      *testsuite.DevServer
	address     string
	rabbitURL   string
	resultQueue string
	logDir      string
}

func start() (*environment, error) {
	bin := os.Getenv("GPUJOBS_BIN")
	if bin == "" {
		bin = "../../bin"
	}
	bin, _ = filepath.Abs(bin)
	for _, b := range []string{"devserver", "worker", "starter", "monitor"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s/%s missing: run make build first", bin, b)
		}
	}
	logDir, err := os.MkdirTemp("", "gpujobs-e2e-")
	if err != nil {
		return nil, err
	}
	// Every worker and starter of the tests shares one artifact store: the S3 server make test
	// starts when there is one (a prefix of its own per run), else a directory.
	store := "file://" + filepath.Join(logDir, "artifacts")
	if bucket := os.Getenv("GPUJOBS_S3_TEST_BUCKET"); bucket != "" && os.Getenv("GPUJOBS_S3_ENDPOINT") != "" {
		store = "s3://" + bucket + "/e2e-" + testutil.RandomHex(4)
	}
	os.Setenv("GPUJOBS_ARTIFACTS", store)
	logf, err := os.Create(filepath.Join(logDir, "devserver.log"))
	if err != nil {
		return nil, err
	}
	srv, err := testsuite.StartDevServer(context.Background(), testsuite.DevServerOptions{
		ExistingPath: filepath.Join(bin, "devserver"),
		LogLevel:     "warn",
		Stdout:       logf,
		Stderr:       logf,
	})
	if err != nil {
		return nil, fmt.Errorf("start dev server: %w", err)
	}
	e := &environment{
		bin:         bin,
		server:      srv,
		address:     srv.FrontendHostPort(),
		rabbitURL:   envOr("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		resultQueue: "e2e_results_" + testutil.RandomHex(4),
		logDir:      logDir,
	}
	fmt.Printf("e2e: dev server %s, result queue %s, artifacts %s, logs %s\n", e.address, e.resultQueue, store, logDir)
	return e, nil
}

func (e *environment) stop() {
	e.server.Stop()
	testutil.DeleteQueues(e.rabbitURL, e.resultQueue)
	testutil.DeleteQueues(e.rabbitURL, e.logQueue())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
