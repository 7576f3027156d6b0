package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/searchattribute/sadefs"
)

// defaultDBFile is where plain `devserver` keeps its state, so that workflows survive a restart.
const defaultDBFile = "./data/temporal.db"

// config is everything the command line can set. The zero value of an optional field means the
// default documented on its flag.
type config struct {
	IP       string // frontend gRPC bind address
	Port     int    // frontend gRPC port
	HTTPPort int    // frontend HTTP API port; 0 picks a free one
	// MetricsPort serves Prometheus /metrics when non-zero. Off by default: recording metrics
	// costs CPU, and on a small machine the server is the bottleneck.
	MetricsPort int

	Headless        bool
	UIIP            string // empty: same as IP
	UIPort          int    // 0: Port+1000, so 7233 gives 8233
	UIPublicPath    string
	UIAssetPath     string
	UICodecEndpoint string

	DBFilename    string            // empty: in memory, lost at exit
	SQLitePragmas map[string]string // extra pragmas, override the ones set for a file DB

	Namespaces       []string                            // "default" first, no duplicates
	SearchAttributes map[string]enumspb.IndexedValueType // custom search attributes of every namespace
	DynamicConfig    map[string]any                      // defaults overridden by --dynamic-config-value

	LogLevel  string // debug, info, warn, error or never
	LogFormat string // text, pretty or json
	LogConfig bool   // print the server's config to stderr at start
}

// defaultSearchAttributes are the attributes gpujobs workflows set, so that the monitor and the UI
// can filter on them (JobType = "matrix_multiply") without anyone registering them first.
func defaultSearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		"JobType":    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"Device":     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"Priority":   enumspb.INDEXED_VALUE_TYPE_INT,
		"Tenant":     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		"WorkerType": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}

// defaultDynamicConfig tunes the server for one node and low latency rather than for a cluster.
// Keys and types are those of go.temporal.io/server v1.32.1 common/dynamicconfig/constants.go;
// an int setting must be given an int (not int64 or float64) or the server ignores it.
func defaultDynamicConfig() map[string]any {
	return map[string]any{
		// The history queue processors poll at 20/s per shard by default. With one shard that
		// adds ~40 ms to every workflow task once the first few have used up the burst.
		"history.transferProcessorMaxPollRPS":   10000,
		"history.timerProcessorMaxPollRPS":      10000,
		"history.visibilityProcessorMaxPollRPS": 10000,

		// Search attributes and Nexus endpoints are visible as soon as they are created, instead
		// of after a cache refresh; the CLI's start-dev does the same. Reading through the cache
		// costs DB queries, hence the higher persistence limits (the CLI's values, which keep
		// the default ratio between the two).
		"system.forceSearchAttributesCacheRefreshOnRead": true,
		"system.forceNexusEndpointRefreshOnRead":         true,
		"frontend.persistenceMaxQPS":                     10000,
		"history.persistenceMaxQPS":                      45000,

		// Jobs carry a fairness key (tenant) and a priority 1..5 (1 is highest).
		"matching.enableFairness": true,
		"matching.priorityLevels": 5,
		// Priority and fairness order tasks within one partition. With the default four
		// partitions a low-priority task in one partition can be dispatched before a
		// high-priority task in another; one partition makes the order hold for the whole
		// queue, and on one node it also spares the forwarding hop between partitions.
		"matching.numTaskqueueReadPartitions":  1,
		"matching.numTaskqueueWritePartitions": 1,

		// The UI and the monitor list and count workflows often; 10/s per namespace throttles them.
		"frontend.namespaceRPS.visibility": 100,
		// 128k cached workflows is sized for a server host, not a laptop (the CLI uses 8096).
		"history.hostLevelCacheMaxSize": 8096,
		// There is no internet here; the periodic version check would only fail.
		"frontend.enableServerVersionCheck": false,
	}
}

// ignoredFlags are the temporal CLI's global options. They mean nothing to a server, but a
// command line written for `temporal server start-dev` may carry them, so they are accepted.
var ignoredFlags = []struct {
	name   string
	isBool bool
}{
	{"env", false}, {"env-file", false}, {"config-file", false}, {"profile", false},
	{"disable-config-file", true}, {"disable-config-env", true},
	{"output", false}, {"o", false}, {"time-format", false}, {"color", false},
	{"no-json-shorthand-payloads", true}, {"command-timeout", false}, {"client-connect-timeout", false},
}

// errUsage marks a command-line error, so that main can exit with status 2.
var errUsage = errors.New("usage")

// parseArgs reads the command line. It accepts the shape of `temporal server start-dev` (the Go
// SDK's testsuite.StartDevServer runs "server start-dev --ip … --port …") as well as the same flags
// with no subcommand. The two differ in one default: like the CLI, `server start-dev` keeps its
// state in memory unless --db-filename is given, so that SDK test servers never share a file;
// plain `devserver` keeps it in ./data/temporal.db.
//
// Help goes to helpOut and returns flag.ErrHelp.
func parseArgs(args []string, helpOut io.Writer) (config, error) {
	var (
		cfg                                         config
		namespaces, searchAttrs, dynConfig, pragmas multiFlag
	)
	fs := flag.NewFlagSet("devserver", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&cfg.DBFilename, "db-filename", defaultDBFile, `SQLite file for the server's state; "" keeps it in memory (default for "server start-dev": in memory)`)
	fs.StringVar(&cfg.DBFilename, "f", defaultDBFile, "short for --db-filename")
	fs.Var(&namespaces, "namespace", `namespace to register at start, repeatable ("default" always is)`)
	fs.Var(&namespaces, "n", "short for --namespace")
	fs.IntVar(&cfg.Port, "port", 7233, "frontend gRPC port")
	fs.IntVar(&cfg.Port, "p", 7233, "short for --port")
	fs.IntVar(&cfg.HTTPPort, "http-port", 0, "frontend HTTP API port (0: a free port)")
	fs.IntVar(&cfg.MetricsPort, "metrics-port", 0, "Prometheus /metrics port (0: no metrics)")
	fs.IntVar(&cfg.UIPort, "ui-port", 0, "Web UI port (0: --port + 1000)")
	fs.BoolVar(&cfg.Headless, "headless", false, "do not serve the Web UI")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "IP address the frontend binds to")
	fs.StringVar(&cfg.UIIP, "ui-ip", "", "IP address the Web UI binds to (default: --ip)")
	fs.StringVar(&cfg.UIPublicPath, "ui-public-path", "", "public base path of the Web UI")
	fs.StringVar(&cfg.UIAssetPath, "ui-asset-path", "", "directory of custom Web UI assets")
	fs.StringVar(&cfg.UICodecEndpoint, "ui-codec-endpoint", "", "remote codec endpoint for the Web UI")
	fs.Bool("ui-disable-news-fetch", false, "accepted for the CLI's sake; the news feed is always off here (no internet)")
	fs.Var(&pragmas, "sqlite-pragma", "SQLite pragma as NAME=VALUE, repeatable")
	fs.Var(&dynConfig, "dynamic-config-value", "dynamic config as KEY=JSONVALUE, repeatable; overrides the defaults")
	fs.BoolVar(&cfg.LogConfig, "log-config", false, "print the server config to stderr")
	fs.Var(&searchAttrs, "search-attribute", "custom search attribute as NAME=TYPE (Text, Keyword, Int, Double, Bool, Datetime, KeywordList), repeatable")
	fs.StringVar(&cfg.LogLevel, "log-level", "warn", "server log level: debug, info, warn, error or never")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "server log format: text, pretty or json")
	for _, f := range ignoredFlags {
		if f.isBool {
			fs.Bool(f.name, false, "ignored (temporal CLI option)")
		} else {
			fs.String(f.name, "", "ignored (temporal CLI option)")
		}
	}

	// The flag package stops at the first word that is not a flag; parse again after each word
	// so that flags may come before, between and after "server" and "start-dev".
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(fs, helpOut)
				return config{}, err
			}
			return config{}, fmt.Errorf("%w: %v (devserver --help lists the flags)", errUsage, err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		words, rest = append(words, rest[0]), rest[1:]
	}
	startDev := slices.Equal(words, []string{"server", "start-dev"})
	if len(words) > 0 && !startDev {
		return config{}, fmt.Errorf("%w: unexpected argument(s) %q: want no subcommand or \"server start-dev\"", errUsage, words)
	}
	dbSet := false
	fs.Visit(func(f *flag.Flag) { dbSet = dbSet || f.Name == "db-filename" || f.Name == "f" })
	if startDev && !dbSet {
		cfg.DBFilename = ""
	}

	if err := cfg.finish(namespaces, searchAttrs, dynConfig, pragmas); err != nil {
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return cfg, nil
}

// finish validates what the flags set and fills in the derived fields.
func (c *config) finish(namespaces, searchAttrs, dynConfig, pragmas []string) error {
	// The server needs an IP to bind to and to advertise; the CLI makes the same substitution.
	if c.IP == "localhost" {
		c.IP = "127.0.0.1"
	}
	if net.ParseIP(c.IP) == nil {
		return fmt.Errorf("--ip %q is not an IP address", c.IP)
	}
	if c.UIIP == "" || c.UIIP == "localhost" {
		c.UIIP = c.IP
	}
	if net.ParseIP(c.UIIP) == nil {
		return fmt.Errorf("--ui-ip %q is not an IP address", c.UIIP)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("--port %d is not in 1..65535", c.Port)
	}
	if c.UIPort == 0 {
		c.UIPort = min(c.Port+1000, 65535)
	}
	for name, p := range map[string]int{"--http-port": c.HTTPPort, "--metrics-port": c.MetricsPort, "--ui-port": c.UIPort} {
		if p < 0 || p > 65535 {
			return fmt.Errorf("%s %d is not in 0..65535", name, p)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error", "never"}, c.LogLevel) {
		return fmt.Errorf("--log-level %q: want debug, info, warn, error or never", c.LogLevel)
	}
	if !slices.Contains([]string{"text", "pretty", "json"}, c.LogFormat) {
		return fmt.Errorf("--log-format %q: want text, pretty or json", c.LogFormat)
	}

	c.Namespaces = []string{"default"}
	for _, ns := range namespaces {
		if ns == "" {
			return errors.New("--namespace: empty name")
		}
		if !slices.Contains(c.Namespaces, ns) {
			c.Namespaces = append(c.Namespaces, ns)
		}
	}

	c.SearchAttributes = defaultSearchAttributes()
	for _, kv := range searchAttrs {
		name, typ, err := parseSearchAttribute(kv)
		if err != nil {
			return fmt.Errorf("--search-attribute %q: %w", kv, err)
		}
		c.SearchAttributes[name] = typ
	}

	c.DynamicConfig = defaultDynamicConfig()
	for _, kv := range dynConfig {
		key, raw, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return fmt.Errorf("--dynamic-config-value %q: want KEY=JSONVALUE", kv)
		}
		v, err := parseJSONValue(raw)
		if err != nil {
			return fmt.Errorf("--dynamic-config-value %q: value is not JSON (a string needs quotes): %w", kv, err)
		}
		c.DynamicConfig[strings.TrimSpace(key)] = v
	}

	c.SQLitePragmas = map[string]string{}
	for _, kv := range pragmas {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--sqlite-pragma %q: want NAME=VALUE", kv)
		}
		c.SQLitePragmas[k] = v
	}
	return nil
}

var identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseSearchAttribute reads NAME=TYPE. TYPE is matched without regard to case against both the
// short names the CLI and the SDK print (Keyword) and the proto names (INDEXED_VALUE_TYPE_KEYWORD).
func parseSearchAttribute(kv string) (string, enumspb.IndexedValueType, error) {
	name, typeName, ok := strings.Cut(kv, "=")
	if !ok {
		return "", 0, errors.New("want NAME=TYPE")
	}
	if !identifierRE.MatchString(name) {
		return "", 0, fmt.Errorf("name %q is not an identifier", name)
	}
	if sadefs.IsReserved(name) {
		return "", 0, fmt.Errorf("name %q is reserved by Temporal", name)
	}
	for _, names := range []map[string]int32{enumspb.IndexedValueType_shorthandValue, enumspb.IndexedValueType_value} {
		for n, v := range names {
			if v != int32(enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED) && strings.EqualFold(n, typeName) {
				return name, enumspb.IndexedValueType(v), nil
			}
		}
	}
	return "", 0, fmt.Errorf("unknown type %q: want Text, Keyword, Int, Double, Bool, Datetime or KeywordList", typeName)
}

// parseJSONValue decodes a dynamic config value. JSON numbers become int where they are whole,
// because the server's int settings accept Go ints only (a float64 10000 would be ignored).
func parseJSONValue(raw string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the value")
	}
	return fromJSONNumbers(v)
}

func fromJSONNumbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return int(i), nil
		}
		return v.Float64()
	case []any:
		for i := range v {
			var err error
			if v[i], err = fromJSONNumbers(v[i]); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k := range v {
			x, err := fromJSONNumbers(v[k])
			if err != nil {
				return nil, err
			}
			v[k] = x
		}
	}
	return v, nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `devserver runs a single-node Temporal server and its Web UI for gpujobs development.

Usage:
  devserver [flags]                    state in ./data/temporal.db by default
  devserver server start-dev [flags]   same flags; state in memory by default, like the temporal CLI

Flags (one or two dashes):
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
