// Package config holds the settings shared by the gpujobs commands: where Temporal and RabbitMQ
// are, how to log. Every setting is a flag whose default comes from an environment variable, so
// the same binaries run from a shell, docker-compose and Kubernetes.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/gpujobs/gpujobs/jobs"
)

// Env returns the environment variable name, or def when it is unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envErrors collects the environment variables that could not be read, for CheckEnv. Flags
// take their defaults from the environment when a command builds its flag set, so the errors
// are found then and reported once the command runs.
var (
	envMu     sync.Mutex
	envErrors = map[string]error{}
)

func badEnv(name, value, want string) {
	envMu.Lock()
	envErrors[name] = fmt.Errorf("environment variable %s=%q: want %s", name, value, want)
	envMu.Unlock()
}

// CheckEnv returns an error naming every environment variable that EnvInt, EnvDuration or
// EnvBytes could not read, or nil: a malformed setting stops the command rather than being
// silently replaced by its default.
func CheckEnv() error {
	envMu.Lock()
	defer envMu.Unlock()
	names := make([]string, 0, len(envErrors))
	for n := range envErrors {
		names = append(names, n)
	}
	sort.Strings(names)
	errs := make([]error, len(names))
	for i, n := range names {
		errs[i] = envErrors[n]
	}
	return errors.Join(errs...)
}

// EnvInt is Env for integers.
func EnvInt(name string, def int) int {
	return envParse(name, def, strconv.Atoi, "an integer")
}

// EnvDuration is Env for durations such as "30s".
func EnvDuration(name string, def time.Duration) time.Duration {
	return envParse(name, def, time.ParseDuration, "a duration with its unit, such as 10s, 500ms or 2m")
}

// EnvBytes is Env for sizes such as "8GiB" (see ParseBytes).
func EnvBytes(name string, def int64) int64 {
	return envParse(name, def, ParseBytes, "a size such as 8GiB, 512MiB or a number of bytes")
}

// envParse reads the variable name with parse; unset or empty is def, and a value parse
// refuses is def too, recorded for CheckEnv with what the variable takes.
func envParse[T any](name string, def T, parse func(string) (T, error), want string) T {
	raw := os.Getenv(name)
	if raw == "" {
		return def
	}
	v, err := parse(strings.TrimSpace(raw))
	if err != nil {
		badEnv(name, raw, want)
		return def
	}
	return v
}

// ParseBytes reads a size such as 8GiB (see jobs.ParseBytes).
func ParseBytes(s string) (int64, error) { return jobs.ParseBytes(s) }

// Bytes is a flag value holding a size, e.g. --memory-limit 8GiB.
type Bytes int64

func (b *Bytes) String() string {
	if *b == 0 {
		return "0"
	}
	return strconv.FormatInt(int64(*b), 10)
}

// Set parses a size.
func (b *Bytes) Set(s string) error {
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = Bytes(v)
	return nil
}

// Type names the value in --help.
func (*Bytes) Type() string { return "size" }

// Temporal says which Temporal cluster and namespace to use.
type Temporal struct {
	Address   string // host:port of the frontend
	Namespace string
	UIURL     string // base URL of the Web UI, for links
	TLS       TLS
}

// TLS is a client's TLS setup: a CA to trust (else the system's), and a client certificate and
// key for mutual TLS. Empty fields mean plain TCP (or, with only CAFile, server-verified TLS).
type TLS struct {
	CAFile, CertFile, KeyFile string
	ServerName                string
}

// Enabled reports whether any TLS setting is present.
func (t TLS) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// AddFlags registers --temporal-address, --namespace and --ui-url.
func (t *Temporal) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.Address, "temporal-address", Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&t.Namespace, "namespace", Env("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&t.UIURL, "ui-url", Env("TEMPORAL_UI_URL", "http://127.0.0.1:8233"), "Temporal Web UI base URL, for links (env TEMPORAL_UI_URL)")
	fs.StringVar(&t.TLS.CAFile, "temporal-tls-ca", Env("TEMPORAL_TLS_CA", ""), "CA certificate (PEM) of the Temporal frontend (env TEMPORAL_TLS_CA)")
	fs.StringVar(&t.TLS.CertFile, "temporal-tls-cert", Env("TEMPORAL_TLS_CERT", ""), "client certificate (PEM) for mutual TLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&t.TLS.KeyFile, "temporal-tls-key", Env("TEMPORAL_TLS_KEY", ""), "client key (PEM) for mutual TLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&t.TLS.ServerName, "temporal-tls-server-name", Env("TEMPORAL_TLS_SERVER_NAME", ""), "server name to verify, if not the address's host (env TEMPORAL_TLS_SERVER_NAME)")
}

// WorkflowURL links to a workflow in the Web UI.
func (t Temporal) WorkflowURL(workflowID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", t.UIURL, url.PathEscape(t.Namespace), url.PathEscape(workflowID))
}

// ScheduleURL links to a schedule in the Web UI.
func (t Temporal) ScheduleURL(scheduleID string) string {
	return fmt.Sprintf("%s/namespaces/%s/schedules/%s", t.UIURL, url.PathEscape(t.Namespace), url.PathEscape(scheduleID))
}

// RabbitMQ says where the result queue lives.
type RabbitMQ struct {
	URL string
	// Queue is the result queue's name; its dead-letter queue is Queue+".dlq".
	Queue string
	// QueueType is "classic" (single node) or "quorum" (replicated, for RabbitMQ clusters).
	QueueType string
	// CAFile, CertFile and KeyFile configure amqps:// connections (CA to trust; client
	// certificate for mutual TLS). Without them amqps:// uses the system's roots.
	TLS TLS
}

// AddFlags registers --rabbitmq-url, --result-queue and --queue-type.
func (r *RabbitMQ) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&r.URL, "rabbitmq-url", DefaultRabbitURL(), "AMQP URL (env RABBITMQ_URL, or RABBITMQ_HOST/PORT/USER/PASS/VHOST)")
	fs.Lookup("rabbitmq-url").DefValue = Redact(r.URL) // --help must not print a password
	fs.StringVar(&r.Queue, "result-queue", Env("RESULT_QUEUE", "result_queue"), "name of the durable result queue (env RESULT_QUEUE)")
	fs.StringVar(&r.TLS.CAFile, "rabbitmq-tls-ca", Env("RABBITMQ_TLS_CA", ""), "CA certificate (PEM) for amqps:// (env RABBITMQ_TLS_CA)")
	fs.StringVar(&r.TLS.CertFile, "rabbitmq-tls-cert", Env("RABBITMQ_TLS_CERT", ""), "client certificate (PEM) for amqps:// (env RABBITMQ_TLS_CERT)")
	fs.StringVar(&r.TLS.KeyFile, "rabbitmq-tls-key", Env("RABBITMQ_TLS_KEY", ""), "client key (PEM) for amqps:// (env RABBITMQ_TLS_KEY)")
	fs.StringVar(&r.QueueType, "queue-type", Env("RABBITMQ_QUEUE_TYPE", "classic"), "type of result_queue when declaring it: classic or quorum (env RABBITMQ_QUEUE_TYPE)")
}

// DefaultRabbitURL is RABBITMQ_URL, else a URL built from the seed's RABBITMQ_HOST/PORT/USER/PASS
// variables (amqps on 5671 when RABBITMQ_TLS_CA or _CERT is set), else RabbitMQ's local default.
func DefaultRabbitURL() string {
	if v := os.Getenv("RABBITMQ_URL"); v != "" {
		return v
	}
	scheme, port := "amqp", "5672"
	if os.Getenv("RABBITMQ_TLS_CA") != "" || os.Getenv("RABBITMQ_TLS_CERT") != "" {
		scheme, port = "amqps", "5671" // TLS settings without a URL mean RabbitMQ's TLS listener
	}
	u := url.URL{
		Scheme: scheme,
		User:   url.UserPassword(Env("RABBITMQ_USER", "guest"), Env("RABBITMQ_PASS", "guest")),
		Host:   net.JoinHostPort(Env("RABBITMQ_HOST", "127.0.0.1"), Env("RABBITMQ_PORT", port)),
		Path:   "/" + os.Getenv("RABBITMQ_VHOST"),
	}
	return u.String()
}

// Redact hides the password of a URL, for logs and error messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// Log says how to log.
type Log struct {
	Format string // console or json
	Level  string // debug, info, warn, error
}

// AddFlags registers --log-format and --log-level.
func (l *Log) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&l.Format, "log-format", Env("LOG_FORMAT", "console"), "console or json (env LOG_FORMAT)")
	fs.StringVar(&l.Level, "log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
}

// ErrBadTLS marks TLS settings that cannot work (unreadable files, a certificate without its key).
var ErrBadTLS = errors.New("bad TLS settings")

// Config builds a *tls.Config; serverName defaults to the host of address.
func (t TLS) Config(address string) (*tls.Config, error) {
	c, err := t.config(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadTLS, err)
	}
	return c, nil
}

func (t TLS) config(address string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			c.ServerName = host
		}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA %s: %w", t.CAFile, err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s: no PEM certificate in it", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("mutual TLS needs both a client certificate and its key")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
