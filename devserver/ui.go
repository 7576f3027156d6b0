package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/temporalio/ui-server/v2/plugins/fs_config_provider"
	uiserver "github.com/temporalio/ui-server/v2/server"
	"github.com/temporalio/ui-server/v2/server/api"
	"github.com/temporalio/ui-server/v2/server/headers"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// uiDockerConfig is config/docker.yaml of github.com/temporalio/ui-server/v2 v2.55.0, unchanged:
// the template the temporalio/ui image fills from its environment (TEMPORAL_ADDRESS,
// TEMPORAL_UI_PORT, TEMPORAL_DEFAULT_NAMESPACE, ...). TestUIDockerConfigIsUpstreams keeps it so.
//
//go:embed ui-docker.yaml
var uiDockerConfig []byte

// runUIStart serves the Temporal Web UI as the temporalio/ui image does (`ui-server --env docker
// start`), until ctx ends.
func runUIStart(ctx context.Context, args []string, out, helpOut io.Writer) error {
	fs := flag.NewFlagSet("devserver ui start", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(helpOut, `devserver ui start serves the Temporal Web UI as the temporalio/ui image does, configured
from the environment: TEMPORAL_ADDRESS (127.0.0.1:7233), TEMPORAL_UI_PORT (8080),
TEMPORAL_DEFAULT_NAMESPACE (default), TEMPORAL_CORS_ORIGINS, TEMPORAL_TLS_*, ... It takes no flags.`)
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: ui start takes no arguments, got %q", errUsage, fs.Args())
	}
	// The image keeps the template in ./config/docker.yaml; here it lives in a directory of its
	// own for the life of the process.
	dir, err := os.MkdirTemp("", "devserver-ui-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "docker.yaml"), uiDockerConfig, 0o600); err != nil {
		return err
	}
	provider := fs_config_provider.NewFSConfigProvider(dir, "docker")
	cfg, err := provider.GetConfig()
	if err != nil {
		return fmt.Errorf("UI config: %w", err)
	}
	s := uiserver.NewServer(
		uioptions.WithConfigProvider(provider),
		uioptions.WithAPIMiddleware([]api.Middleware{headers.WithForwardHeaders(cfg.ForwardHeaders)}),
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Start() // nil once Stop closes it; it exits the process itself on a bind error
	}()
	fmt.Fprintf(out, "Temporal Web UI: port %d, Temporal at %s\n", cfg.Port, cfg.TemporalGRPCAddress)
	select {
	case <-ctx.Done():
	case <-done:
	}
	s.Stop()
	<-done
	return nil
}
