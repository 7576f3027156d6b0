// Package artifacts stores the files jobs produce (outputs, checkpoints) and hands them back, with
// each object's size and sha256: in a directory (one machine, the dev stack) or in S3-compatible
// object storage (a cluster). Every byte goes through streaming reads and writes, never a whole
// file in memory, and every download is checked against the sha256 recorded when it was stored.
//
// It must not link Temporal, RabbitMQ or the kernels: the starter and the monitor use it. Object
// store credentials come only from the environment (or a file the environment names, such as a
// mounted Kubernetes secret), never from flags or the repository.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/gpujobs/gpujobs/internal/config"
)

// Object is one stored file.
type Object struct {
	Key    string `json:"key"`    // full key in the store, e.g. "jobs/job-0123456789ab/outputs/model.pt"
	Name   string `json:"name"`   // relative to the prefix it was listed/put under, e.g. "model.pt"
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // hex
}

// Store keeps objects under "/"-separated keys.
type Store interface {
	// Put stores r under key, streaming (never the whole file in memory), computing size and
	// sha256. An existing object under key is replaced; readers see the old or the new one whole.
	Put(ctx context.Context, key string, r io.Reader) (Object, error)
	// Get opens the object under key. A missing key is an error wrapping ErrNotFound. The reader
	// checks what it reads against the recorded size and sha256: instead of io.EOF it returns an
	// error wrapping ErrCorrupt when they differ.
	Get(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// List returns the objects whose keys start with prefix, sorted by key, with Name relative to
	// prefix.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes every object under prefix (which must not be empty).
	Delete(ctx context.Context, prefix string) error
}

var (
	// ErrNotFound: no object under the key.
	ErrNotFound = errors.New("no such artifact")
	// ErrCorrupt: an object's bytes do not match the size or sha256 recorded when it was stored.
	ErrCorrupt = errors.New("artifact corrupt")
	// ErrBadKey: a key or prefix that is not a clean relative "/"-separated path.
	ErrBadKey = errors.New("bad artifact key")
)

// Config says where the store is. Credentials are not part of it: see the package comment.
type Config struct {
	URL      string // file:///abs/dir (the directory store) or s3://bucket/optional/prefix
	Endpoint string // S3 endpoint URL, e.g. http://127.0.0.1:8333 (empty: AWS)
	Region   string // S3 region (empty: AWS_REGION, else us-east-1)
}

// DefaultDir is the directory store's default, relative to the working directory (made absolute
// when the flags are registered): beside the dev stack's other run state.
const DefaultDir = "run/artifacts"

// AddFlags registers --artifacts, --s3-endpoint and --s3-region with their environment fallbacks.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	def := DefaultDir
	if abs, err := filepath.Abs(def); err == nil {
		def = abs
	}
	fs.StringVar(&c.URL, "artifacts", config.Env("GPUJOBS_ARTIFACTS", "file://"+def),
		"artifact store: file:///dir or s3://bucket/prefix (env GPUJOBS_ARTIFACTS; S3 credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or GPUJOBS_S3_CREDENTIALS_FILE)")
	fs.StringVar(&c.Endpoint, "s3-endpoint", config.Env("GPUJOBS_S3_ENDPOINT", ""),
		"S3 endpoint URL for S3-compatible storage, e.g. http://seaweedfs:8333 (env GPUJOBS_S3_ENDPOINT; empty: AWS)")
	fs.StringVar(&c.Region, "s3-region", config.Env("GPUJOBS_S3_REGION", ""),
		"S3 region (env GPUJOBS_S3_REGION; empty: AWS_REGION, else us-east-1)")
}

// Open connects to the store c names and checks that it is reachable and writable (the
// directory exists or can be made; the bucket answers to the credentials and takes a write).
// Errors are one line naming the store.
func Open(ctx context.Context, c Config) (Store, error) {
	raw := strings.TrimSpace(c.URL)
	if raw == "" {
		return nil, errors.New("artifact store: empty URL: set --artifacts or GPUJOBS_ARTIFACTS to file:///dir or s3://bucket/prefix")
	}
	if !strings.Contains(raw, "://") { // a plain path is a directory store
		abs, err := filepath.Abs(raw)
		if err != nil {
			return nil, fmt.Errorf("artifact store %s: %w", raw, err)
		}
		return openDir(abs)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("artifact store %q: not a URL: want file:///dir or s3://bucket/prefix", raw)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("artifact store %s: a file URL needs an absolute path, file:///dir (three slashes), not host %q", raw, u.Host)
		}
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("artifact store %s: the path must be absolute (file:///dir)", raw)
		}
		return openDir(filepath.Clean(u.Path))
	case "s3":
		return openS3(ctx, c, u)
	default:
		return nil, fmt.Errorf("artifact store %s: unknown scheme %q: want file:///dir or s3://bucket/prefix", raw, u.Scheme)
	}
}

// JobPrefix is where everything of a job lives: "jobs/<jobID>/". A job ID may hold any printable
// character, so the few that would make it more or less than one path segment are escaped ("%"
// as %25, "/" as %2F, and the IDs "." and ".." as %2E and %2E%2E): job "a/b" cannot see or delete
// job "a"'s artifacts. The usual job-<12 hex> IDs are unchanged.
func JobPrefix(jobID string) string { return "jobs/" + escapeSegment(jobID) + "/" }

func escapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(s)
}

// OutputPrefix is where a job's outputs (the files its outputs patterns matched) live.
func OutputPrefix(jobID string) string { return JobPrefix(jobID) + "outputs/" }

// CheckpointPrefix is where a job's checkpoint directory is saved.
func CheckpointPrefix(jobID string) string { return JobPrefix(jobID) + "checkpoint/" }

// maxKey is S3's limit on a key's length in bytes.
const maxKey = 1024

// checkKey accepts a clean relative "/"-separated path: no empty, "." or ".." segment, no
// leading or trailing "/", valid UTF-8 without control characters, at most 1024 bytes. Both
// stores apply it, so what one accepts the other does too.
func checkKey(key string) error {
	if err := checkPath(key); err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadKey, key, err)
	}
	return nil
}

// checkPrefix accepts "" or a key prefix: a clean relative path, optionally ending in "/", whose
// last segment may be partial.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkPath(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("%w: prefix %q: %v", ErrBadKey, prefix, err)
	}
	return nil
}

func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty")
	case len(p) > maxKey:
		return fmt.Errorf("%d bytes, at most %d", len(p), maxKey)
	case !utf8.ValidString(p):
		return errors.New("not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute: keys are relative paths")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return errors.New(`empty path segment ("//" or a trailing "/")`)
		case ".", "..":
			return fmt.Errorf("%q path segment", seg)
		}
	}
	return nil
}

// underPrefix reports whether key lies under prefix and returns its name relative to it.
func underPrefix(key, prefix string) (string, bool) {
	if !strings.HasPrefix(key, prefix) || len(key) == len(prefix) {
		return "", false
	}
	return key[len(prefix):], true
}

// errorf formats an error about the store s, one line.
func storeErr(store, op, key string, err error) error {
	return fmt.Errorf("artifact store %s: %s %s: %w", store, op, key, err)
}

// isNotExist reports a missing file, also through a path whose parent is a file.
func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, errNotDir)
}
