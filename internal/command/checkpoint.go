package command

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/jobs"
)

// Checkpoints keeps one job's checkpoint directory in the artifact store: Restore fills the
// directory from what an earlier attempt saved (on whatever worker), Save stores it again when it
// changed. It implements jobs.Checkpointer for kernels (neural_network) and is what the command
// runner saves periodically and when the program stops.
type Checkpoints struct {
	store artifacts.Store
	jobID string
	dir   string

	mu       sync.Mutex
	restored string // a description of the checkpoint restored, "" when none
	saved    string // the signature of the directory when it was last saved
	gen      int64  // the generation last restored or saved
}

// A checkpoint is saved whole or not at all: each save is a new generation under the job's
// checkpoint prefix, "<gen>/files/..." and then the marker "<gen>/complete", written last.
// Restore takes the newest complete generation (a worker that died mid-save left an incomplete
// one, ignored), and a save deletes the generations before it once its marker is written. The
// generation is the save's time in nanoseconds, and always above any found at restore, so a
// second worker with a slower clock still saves after the first.
const completeMarker = "complete"

func genPrefix(jobID string, gen int64) string {
	return artifacts.CheckpointPrefix(jobID) + fmt.Sprintf("%020d/", gen)
}

// generations reads the job's saved generations: the newest complete one and its files, and
// all of them.
func (c *Checkpoints) generations(ctx context.Context) (newest int64, files []artifacts.Object, all []int64, err error) {
	objs, err := c.store.List(ctx, artifacts.CheckpointPrefix(c.jobID))
	if err != nil {
		return 0, nil, nil, err
	}
	byGen := map[int64][]artifacts.Object{}
	seen, complete := map[int64]bool{}, map[int64]bool{}
	for _, o := range objs {
		g, rest, ok := strings.Cut(o.Name, "/")
		gen, perr := strconv.ParseInt(g, 10, 64)
		if !ok || perr != nil {
			continue // not a generation's
		}
		if !seen[gen] {
			seen[gen] = true
			all = append(all, gen)
		}
		if name, ok := strings.CutPrefix(rest, "files/"); ok {
			o.Name = name
			byGen[gen] = append(byGen[gen], o)
		} else if rest == completeMarker {
			complete[gen] = true
		}
	}
	for _, g := range all {
		if complete[g] && g > newest {
			newest = g
		}
	}
	return newest, byGen[newest], all, nil
}

// NewCheckpoints returns the checkpoints of jobID in dir (created if needed).
func NewCheckpoints(store artifacts.Store, jobID, dir string) (*Checkpoints, error) {
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
	gen, objs, all, err := c.generations(ctx)
	if err != nil {
		return "", fmt.Errorf("restore the checkpoint of %s: %w", c.jobID, err)
	}
	c.mu.Lock()
	for _, g := range all { // the next save comes after every generation, complete or not
		c.gen = max(c.gen, g)
	}
	c.mu.Unlock()
	if gen == 0 {
		return "", nil
	}
	got, err := artifacts.GetObjects(ctx, c.store, objs, c.dir)
	if err != nil {
		return "", fmt.Errorf("restore the checkpoint of %s: %w", c.jobID, err)
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
	gen := max(time.Now().UnixNano(), c.gen+1)
	if _, err := saveDir(ctx, c.store, genPrefix(c.jobID, gen)+"files/", c.dir, nil); err != nil {
		return fmt.Errorf("save the checkpoint of %s: %w", c.jobID, err)
	}
	if _, err := c.store.Put(ctx, genPrefix(c.jobID, gen)+completeMarker, strings.NewReader(sig)); err != nil {
		return fmt.Errorf("save the checkpoint of %s: %w", c.jobID, err)
	}
	c.saved, c.gen = sig, gen
	// The older generations, complete or not, are superseded.
	_, _, all, err := c.generations(ctx)
	if err != nil {
		return nil // the next save deletes them
	}
	for _, g := range all {
		if g < gen {
			_ = c.store.Delete(ctx, genPrefix(c.jobID, g))
		}
	}
	return nil
}

// Forget deletes the saved checkpoint: the job completed and will not be retried.
func (c *Checkpoints) Forget(ctx context.Context) error {
	return c.store.Delete(ctx, artifacts.CheckpointPrefix(c.jobID))
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
