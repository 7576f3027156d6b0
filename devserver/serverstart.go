package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	serverconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql" // registers postgres12 and postgres12_pgx
	"go.temporal.io/server/temporal"
)

// serverStartArgs is the command line of `devserver server start`, which takes the flags of
// `temporal-server start` that a container passes.
type serverStartArgs struct {
	ConfigFile string   // empty: the server's embedded template, filled from the environment
	Services   []string // empty: frontend, history, matching and worker
}

// parseServerStart reads the flags after "server start". Help goes to helpOut.
func parseServerStart(args []string, helpOut io.Writer) (serverStartArgs, error) {
	var a serverStartArgs
	var services multiFlag
	fs := flag.NewFlagSet("devserver server start", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.ConfigFile, "config-file", os.Getenv(serverconfig.EnvKeyConfigFile), "server config file (env "+serverconfig.EnvKeyConfigFile+"); default: the embedded template, filled from the environment")
	fs.Var(&services, "service", "service to start, repeatable (env TEMPORAL_SERVICES, comma-separated); default all")
	fs.Bool("allow-no-auth", false, "accepted for temporal-server's sake; no authorizer is configured either way")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(helpOut, `devserver server start runs the Temporal server as the temporalio/server image does: the
server's embedded config template filled from the environment (DB=postgres12, POSTGRES_SEEDS,
DB_PORT, POSTGRES_USER, POSTGRES_PWD, BIND_ON_IP, DYNAMIC_CONFIG_FILE_PATH, NUM_HISTORY_SHARDS, ...),
or --config-file. The schema must exist (temporal-sql-tool, deployments/temporal/setup-schema.sh).

Flags:
`)
			fs.SetOutput(helpOut)
			fs.PrintDefaults()
			return a, err
		}
		return a, fmt.Errorf("%w: %v (devserver server start --help lists the flags)", errUsage, err)
	}
	if fs.NArg() > 0 {
		return a, fmt.Errorf("%w: server start takes no arguments, got %q", errUsage, fs.Args())
	}
	a.Services = services
	if len(a.Services) == 0 {
		if v := os.Getenv("TEMPORAL_SERVICES"); v != "" {
			a.Services = strings.Split(v, ",")
		}
	}
	if len(a.Services) == 0 {
		a.Services = temporal.DefaultServices
	}
	return a, nil
}

// bindEnv sets what the temporalio/server image's entrypoint.sh sets before it starts the server:
// BIND_ON_IP defaults to the address of this host's name, and a wildcard BIND_ON_IP makes that
// address the broadcast address other services and cluster members dial.
func bindEnv(getenv func(string) string, setenv func(string, string) error, lookup func(string) ([]string, error)) error {
	hostAddr := func() (string, error) {
		name, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("host name: %w", err)
		}
		addrs, err := lookup(name)
		if err != nil || len(addrs) == 0 {
			return "", fmt.Errorf("resolve this host's name %q (set BIND_ON_IP and TEMPORAL_BROADCAST_ADDRESS): %v", name, err)
		}
		for _, a := range addrs { // getent's first answer; an IPv4 one when there is one
			if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
				return a, nil
			}
		}
		return addrs[0], nil
	}
	bind := getenv("BIND_ON_IP")
	if bind == "" {
		addr, err := hostAddr()
		if err != nil {
			return err
		}
		bind = addr
		if err := setenv("BIND_ON_IP", bind); err != nil {
			return err
		}
	}
	if (bind == "0.0.0.0" || bind == "::0" || bind == "::") && getenv("TEMPORAL_BROADCAST_ADDRESS") == "" {
		addr, err := hostAddr()
		if err != nil {
			return err
		}
		if err := setenv("TEMPORAL_BROADCAST_ADDRESS", addr); err != nil {
			return err
		}
	}
	return nil
}

// runServerStart runs the server until ctx ends. Its log is the server's own (the config's log
// section: stdout, LOG_LEVEL), as in the image.
func runServerStart(ctx context.Context, a serverStartArgs, out io.Writer) error {
	if err := bindEnv(os.Getenv, os.Setenv, net.LookupHost); err != nil {
		return err
	}
	var (
		cfg *serverconfig.Config
		err error
	)
	if a.ConfigFile != "" {
		cfg, err = serverconfig.Load(serverconfig.WithConfigFile(a.ConfigFile))
	} else {
		cfg, err = serverconfig.Load(serverconfig.WithEmbedded())
	}
	if err != nil {
		return fmt.Errorf("load server config: %w", err)
	}
	logger := log.NewZapLogger(log.BuildZapLogger(cfg.Log))
	s, err := temporal.NewServer(
		temporal.ForServices(a.Services),
		temporal.WithConfig(cfg),
		temporal.WithLogger(logger),
	)
	if err != nil {
		return fmt.Errorf("build temporal server: %w", err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start temporal server: %w", err)
	}
	fe := cfg.Services["frontend"].RPC
	fmt.Fprintf(out, "Temporal server: services %s, frontend %s, persistence %s\n",
		strings.Join(a.Services, ","), net.JoinHostPort(fe.BindOnIP, fmt.Sprint(fe.GRPCPort)), describeStores(cfg))
	<-ctx.Done()
	return s.Stop()
}

// describeStores names the plugin and address of the default and visibility stores.
func describeStores(cfg *serverconfig.Config) string {
	var parts []string
	for _, name := range []string{cfg.Persistence.DefaultStore, cfg.Persistence.VisibilityStore} {
		ds := cfg.Persistence.DataStores[name]
		switch {
		case ds.SQL != nil:
			parts = append(parts, fmt.Sprintf("%s %s/%s", ds.SQL.PluginName, ds.SQL.ConnectAddr, ds.SQL.DatabaseName))
		case ds.Cassandra != nil:
			parts = append(parts, "cassandra "+ds.Cassandra.Hosts)
		default:
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, ", ")
}

// productionMode returns the command for the "server start" and "ui start" command lines, and nil
// for the dev server's own.
func productionMode(args []string) func(context.Context) error {
	if len(args) < 2 || args[1] != "start" {
		return nil
	}
	switch args[0] {
	case "server":
		return func(ctx context.Context) error {
			a, err := parseServerStart(args[2:], os.Stdout)
			if err != nil {
				return err
			}
			return runServerStart(ctx, a, os.Stdout)
		}
	case "ui":
		return func(ctx context.Context) error { return runUIStart(ctx, args[2:], os.Stdout, os.Stdout) }
	}
	return nil
}
