package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RunInfo is what the worker tells an implementation about the run it is part of, through its
// context: the job, the attempt, the worker, and where the job may save what must survive it.
type RunInfo struct {
	JobID    string
	Attempt  int
	WorkerID string
	// Checkpoints saves and restores the job's checkpoint directory; nil when the worker has no
	// artifact store to keep them in.
	Checkpoints Checkpointer
}

type runInfoKey struct{}

// WithRunInfo returns ctx carrying info.
func WithRunInfo(ctx context.Context, info RunInfo) context.Context {
	return context.WithValue(ctx, runInfoKey{}, info)
}

// RunInfoFrom returns the run info in ctx; ok is false outside a worker's run.
func RunInfoFrom(ctx context.Context) (RunInfo, bool) {
	info, ok := ctx.Value(runInfoKey{}).(RunInfo)
	return info, ok
}

// Checkpointer keeps a job's checkpoint directory across attempts: what an attempt writes there
// and saves is restored into the directory of the next attempt, on whatever worker it runs, so a
// job whose worker died resumes instead of starting over.
type Checkpointer interface {
	// Dir is the local directory whose contents are the checkpoint.
	Dir() string
	// Restored says whether Dir holds a checkpoint of an earlier attempt, and describes it.
	Restored() (ok bool, from string)
	// Save stores Dir's contents now (call it at a consistent point: after a file is complete).
	Save(ctx context.Context) error
}

// Artifact is a file a job produced, as the artifact store holds it.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Bytes is a size in params: a JSON number of bytes, or a string such as "8GiB" or "512MiB".
type Bytes int64

// UnmarshalJSON reads a number of bytes or a size with a unit.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := ParseBytes(s)
		if err != nil {
			return err
		}
		*b = Bytes(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("want a number of bytes or a size such as \"8GiB\", got %s", data)
	}
	*b = Bytes(n)
	return nil
}

// ParseBytes reads a size: a number of bytes, or a number with a unit B, KiB, MiB, GiB, TiB (or
// K, M, G, T, KB, MB, GB, TB, all binary).
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToUpper(strings.TrimSpace(s[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || num == "" {
		return 0, fmt.Errorf("size %q: want a number of bytes or a number with a unit such as 8GiB", s)
	}
	shift, ok := map[string]uint{"": 0, "B": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20,
		"G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q, use B, KiB, MiB, GiB or TiB", s, unit)
	}
	if v*float64(uint64(1)<<shift) > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v * float64(uint64(1)<<shift)), nil
}

// Duration is a duration in params: a string such as "90s" or "2h", or a JSON number of seconds.
type Duration time.Duration

// UnmarshalJSON reads "90s" or 90.
func (d *Duration) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("want a duration such as \"90s\" or \"2h\"")
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(data, &secs); err != nil {
		return fmt.Errorf("want a duration such as \"90s\" or a number of seconds, got %s", data)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string, "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
