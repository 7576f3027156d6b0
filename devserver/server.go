package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"
	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/cluster"
	serverconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
)

// clusterName is the one cluster's name, as the CLI's dev server calls it.
const clusterName = "active"

// internalIP is where history, matching and worker listen: only this process talks to them.
const internalIP = "127.0.0.1"

// run starts the server, and the UI unless headless, prints one line saying where they listen,
// blocks until ctx is done, then stops both. It returns nil after a clean stop.
func run(ctx context.Context, cfg config, logger *zap.Logger, out io.Writer) error {
	ds, err := start(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // a signal came while starting: stopping is what was asked for
		}
		return err
	}
	fmt.Fprintln(out, ds.summary)
	<-ctx.Done()
	ds.stop()
	return nil
}

// devServer is a started server and UI; stop releases both.
type devServer struct {
	temporal temporal.Server
	ui       *uiserver.Server
	uiDone   chan struct{} // closed when the UI's serving goroutine has returned
	quiet    func()        // silences the server's shutdown noise
	summary  string
}

func (d *devServer) stop() {
	d.quiet()
	if d.ui != nil {
		d.ui.Stop()
		<-d.uiDone
	}
	_ = d.temporal.Stop() // it always returns nil; failures to stop a service are logged
}

// start brings the server up and returns once the frontend accepts calls and every namespace
// has the configured search attributes.
func start(ctx context.Context, cfg config, logger *zap.Logger) (*devServer, error) {
	// Fail here, with the port in the message, rather than deep inside the server's start or,
	// for the UI, in its serving goroutine, which exits the process on a bind error.
	if err := checkFree(cfg.IP, cfg.Port); err != nil {
		return nil, fmt.Errorf("frontend port %d: %w", cfg.Port, err)
	}
	if !cfg.Headless {
		if err := checkFree(cfg.UIIP, cfg.UIPort); err != nil {
			return nil, fmt.Errorf("UI port %d (--ui-port; --headless for none): %w", cfg.UIPort, err)
		}
	}
	for name, p := range map[string]int{"HTTP port": cfg.HTTPPort, "metrics port": cfg.MetricsPort} {
		if p != 0 {
			if err := checkFree(cfg.IP, p); err != nil {
				return nil, fmt.Errorf("%s %d: %w", name, p, err)
			}
		}
	}
	ports, err := pickPorts(cfg)
	if err != nil {
		return nil, err
	}

	sqlCfg, err := prepareDatabase(cfg.DBFilename, cfg.SQLitePragmas, cfg.Namespaces, cfg.SearchAttributes)
	if err != nil {
		return nil, err
	}
	serverCfg := buildServerConfig(cfg, sqlCfg, ports)
	if cfg.LogConfig {
		fmt.Fprint(os.Stderr, serverCfg.String())
	}

	serverLogger, quiet := quietable(logger)
	dynConfig := make(dynamicconfig.StaticClient, len(cfg.DynamicConfig))
	for k, v := range cfg.DynamicConfig {
		dynConfig[dynamicconfig.MakeKey(k)] = v
	}
	ts, err := temporal.NewServer(
		temporal.WithConfig(serverCfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: static.SingleLocalHost(ports.frontendDial),
			primitives.HistoryService:  static.SingleLocalHost(net.JoinHostPort(internalIP, strconv.Itoa(ports.history))),
			primitives.MatchingService: static.SingleLocalHost(net.JoinHostPort(internalIP, strconv.Itoa(ports.matching))),
			primitives.WorkerService:   static.SingleLocalHost(net.JoinHostPort(internalIP, strconv.Itoa(ports.worker))),
		}),
		temporal.WithLogger(log.NewZapLogger(serverLogger)),
		temporal.WithDynamicConfigClient(dynConfig),
	)
	if err != nil {
		return nil, fmt.Errorf("build temporal server: %w", err)
	}
	if err := ts.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	ds := &devServer{temporal: ts, quiet: quiet}

	if err := ensureSearchAttributes(ctx, ports.frontendDial, cfg.Namespaces, cfg.SearchAttributes); err != nil {
		ds.stop()
		return nil, err
	}

	uiDesc := "off (--headless)"
	if !cfg.Headless {
		ds.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host:                bracketIPv6(cfg.UIIP),
			Port:                cfg.UIPort,
			TemporalGRPCAddress: ports.frontendDial,
			EnableUI:            true,
			PublicPath:          cfg.UIPublicPath,
			UIAssetPath:         cfg.UIAssetPath,
			Codec:               uiconfig.Codec{Endpoint: cfg.UICodecEndpoint},
			DefaultNamespace:    "default",
			// Plain HTTP on a dev machine: a Secure cookie would never be sent back.
			CORS:     uiconfig.CORS{CookieInsecure: true},
			HideLogs: true,
			// The feed is fetched from the internet, which this setup does not have.
			DisableNewsFetch: true,
		}))
		ds.uiDone = make(chan struct{})
		go func() {
			defer close(ds.uiDone)
			// It returns nil once Stop closes it; on any other error it exits the process
			// itself, which the port check above makes unlikely.
			_ = ds.ui.Start()
		}()
		uiDesc = "http://" + net.JoinHostPort(displayIP(cfg.UIIP), strconv.Itoa(cfg.UIPort)) + cfg.UIPublicPath
	}

	db := cfg.DBFilename
	if db == "" {
		db = "in memory"
	}
	ds.summary = fmt.Sprintf("Temporal dev server: gRPC %s, Web UI %s, db %s",
		net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port)), uiDesc, db)
	return ds, nil
}

// ports are the addresses the server's services use besides the frontend's gRPC port.
type ports struct {
	frontendDial              string // where this process (worker service, UI) reaches the frontend
	http, metrics             int
	history, matching, worker int
}

func pickPorts(cfg config) (ports, error) {
	p := ports{http: cfg.HTTPPort, metrics: cfg.MetricsPort}
	// A wildcard bind address cannot be dialed; loopback reaches it.
	dialIP := cfg.IP
	if ip := net.ParseIP(dialIP); ip.IsUnspecified() {
		dialIP = internalIP
	}
	p.frontendDial = net.JoinHostPort(dialIP, strconv.Itoa(cfg.Port))
	for _, f := range []struct {
		port *int
		ip   string
	}{{&p.http, cfg.IP}, {&p.history, internalIP}, {&p.matching, internalIP}, {&p.worker, internalIP}} {
		if *f.port != 0 {
			continue
		}
		var err error
		if *f.port, err = freePort(f.ip); err != nil {
			return ports{}, err
		}
	}
	return p, nil
}

func buildServerConfig(cfg config, sqlCfg *serverconfig.SQL, p ports) *serverconfig.Config {
	var c serverconfig.Config
	dialIP, _, _ := net.SplitHostPort(p.frontendDial)
	c.Global.Membership.MaxJoinDuration = 30 * time.Second // as the CLI; static membership joins at once
	c.Global.Membership.BroadcastAddress = dialIP
	if p.metrics != 0 {
		c.Global.Metrics = &metrics.Config{Prometheus: &metrics.PrometheusConfig{
			ListenAddress: net.JoinHostPort(cfg.IP, strconv.Itoa(p.metrics)),
			HandlerPath:   "/metrics",
		}}
	}

	const store = "sqlite-default"
	c.Persistence.DefaultStore = store
	c.Persistence.VisibilityStore = store
	c.Persistence.NumHistoryShards = 1 // one node: more shards only add queue processors to poll
	c.Persistence.DataStores = map[string]serverconfig.DataStore{store: {SQL: sqlCfg}}

	c.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{clusterName: {
			Enabled:                true,
			InitialFailoverVersion: 1,
			RPCAddress:             p.frontendDial,
			HTTPAddress:            net.JoinHostPort(dialIP, strconv.Itoa(p.http)),
			// Must be a UUID or the server replaces it, with a warning. A file DB keeps the
			// ID it was created with; this one is then ignored.
			ClusterID: uuid.NewString(),
		}},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	c.Services = map[string]serverconfig.Service{
		string(primitives.FrontendService): {RPC: serverconfig.RPC{GRPCPort: cfg.Port, HTTPPort: p.http, BindOnIP: cfg.IP}},
		string(primitives.HistoryService):  {RPC: serverconfig.RPC{GRPCPort: p.history, BindOnIP: internalIP}},
		string(primitives.MatchingService): {RPC: serverconfig.RPC{GRPCPort: p.matching, BindOnIP: internalIP}},
		string(primitives.WorkerService):   {RPC: serverconfig.RPC{GRPCPort: p.worker, BindOnIP: internalIP}},
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	c.PublicClient.HostPort = p.frontendDial // the worker service's system workflows dial this
	return &c
}

// checkFree reports whether ip:port can be bound now.
func checkFree(ip string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// freePort returns a port that was free a moment ago. Linux hands out recently used ephemeral
// ports again soon, so the port is left in TIME_WAIT by a connection that this side closes
// first: bind(:0) skips it for a minute, while the server's own bind (SO_REUSEADDR) still works.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a free port on %s: %w", ip, err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	c, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return addr.Port, nil // the port is still free; only the TIME_WAIT guard is lost
	}
	defer c.Close()
	if s, err := l.Accept(); err == nil {
		_ = s.Close() // closing the accepted side first puts it, not the dialer, in TIME_WAIT
	}
	return addr.Port, nil
}

// bracketIPv6 formats ip for the UI, which builds its listen address as host + ":" + port.
func bracketIPv6(ip string) string {
	if p := net.ParseIP(ip); p != nil && p.To4() == nil {
		return "[" + ip + "]"
	}
	return ip
}

// displayIP is an address a browser on this machine can open.
func displayIP(ip string) string {
	if net.ParseIP(ip).IsUnspecified() {
		return internalIP
	}
	return ip
}
