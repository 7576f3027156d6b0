package command

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// Checkpoints keeps one job's checkpoint directory in the artifact store: Restore fills the
// directory from what an earlier attempt saved (on whatever worker), Save stores it again when it
// changed. It implements jobs.Checkpointer for kernels (neural_network) and is what the command
// runner saves periodically and when the program stops.
type Checkpoints struct {
	store Store
	jobID string
	dir   string

	mu       sync.Mutex
	restored string // a description of the checkpoint restored, "" when none
	saved    string // the signature of the directory when it was last saved
}

// NewCheckpoints returns the checkpoints of jobID in dir (created if needed).
func NewCheckpoints(store Store, jobID, dir string) (*Checkpoints, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Checkpoints{store: store, jobID: jobID, dir: dir}, nil
}

// Dir implements jobs.Checkpointer.
func (c *Checkpoints) Dir() string { return c.dir }

// Restored implements jobs.Checkpointer.
func (c *Checkpoints) Restored() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restored != "", c.restored
}

// Restore loads the job's saved checkpoint into the directory and says what it found.
func (c *Checkpoints) Restore(ctx context.Context) (string, error) {
	got, err := c.store.LoadDir(ctx, checkpointPrefix(c.jobID), c.dir, "")
	if err != nil {
		return "", fmt.Errorf("restore the checkpoint of %s: %w", c.jobID, err)
	}
	if len(got) == 0 {
		return "", nil
	}
	var size int64
	for _, a := range got {
		size += a.Size
	}
	desc := fmt.Sprintf("%d file(s), %s, saved by an earlier attempt", len(got), jobs.FormatBytes(size))
	sig, _ := signature(c.dir)
	c.mu.Lock()
	c.restored, c.saved = desc, sig
	c.mu.Unlock()
	return desc, nil
}

// Save implements jobs.Checkpointer: it stores the directory unless nothing changed since the
// last save or restore.
func (c *Checkpoints) Save(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sig, err := signature(c.dir)
	if err != nil {
		return err
	}
	if sig == c.saved {
		return nil
	}
	if _, err := c.store.SaveDir(ctx, checkpointPrefix(c.jobID), c.dir, nil); err != nil {
		return fmt.Errorf("save the checkpoint of %s: %w", c.jobID, err)
	}
	c.saved = sig
	return nil
}

// Forget deletes the saved checkpoint: the job completed and will not be retried.
func (c *Checkpoints) Forget(ctx context.Context) error {
	return c.store.Delete(ctx, checkpointPrefix(c.jobID))
}

// signature describes a directory's files (names, sizes, modification times), to tell whether
// it changed.
func signature(dir string) (string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		lines = append(lines, fmt.Sprintf("%s %d %d", rel, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}

// every calls fn every period until ctx is done; the returned function stops it and waits.
func every(ctx context.Context, period time.Duration, fn func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { cancel(); <-done }
}
