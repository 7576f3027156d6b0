// Package hostmem is the ledger of memory that the jobs of every gpujobs worker on one host have
// reserved: a small JSON file under flock, so that two worker processes admitting big jobs at
// the same moment cannot both take the same free memory and call in the OOM killer. A
// reservation lives as long as the process that made it; the entries of dead processes are
// dropped at the next reservation.
package hostmem

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// DefaultPath is where the workers of a host share their ledger: a tmpfs, gone at reboot with
// the processes it describes.
const DefaultPath = "/dev/shm/gpujobs-memory.json"

// Ledger admits jobs against a host-wide budget and what the machine has available now.
type Ledger struct {
	// Path of the ledger file; "" means DefaultPath.
	Path string
	// Budget is the most that all reservations on the host may sum to, bytes.
	Budget int64
	// Available reports the memory available now (sysinfo.MemoryAvailable); nil skips that check.
	Available func() int64
	// Margin is kept free of what Available reports, for everything else the host runs.
	Margin int64
}

// Entry is one reservation.
type Entry struct {
	PID   int       `json:"pid"`
	JobID string    `json:"job_id"`
	Bytes int64     `json:"bytes"`
	Since time.Time `json:"since"`
}

// BusyError says that a reservation does not fit now but may later.
type BusyError struct {
	Need, Reserved, Budget, Available int64
}

func (e *BusyError) Error() string {
	if e.Available >= 0 {
		return fmt.Sprintf("needs %s; the host's gpujobs workers have %s reserved of their %s budget and the machine has %s available",
			gib(e.Need), gib(e.Reserved), gib(e.Budget), gib(e.Available))
	}
	return fmt.Sprintf("needs %s; the host's gpujobs workers have %s reserved of their %s budget", gib(e.Need), gib(e.Reserved), gib(e.Budget))
}

// Unwrap makes a BusyError a jobs.ErrBusy: the worker reports it as ResourceBusy.
func (e *BusyError) Unwrap() error { return jobs.ErrBusy }

func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// Reserve records that jobID needs bytes, if that fits the budget beside the live reservations
// and the memory available now; release removes the reservation. It returns a *BusyError when
// it does not fit now.
func (l *Ledger) Reserve(jobID string, bytes int64) (release func() error, err error) {
	err = l.update(func(entries []Entry) ([]Entry, error) {
		var reserved int64
		for _, e := range entries {
			reserved += e.Bytes
		}
		avail := int64(-1)
		if l.Available != nil {
			avail = l.Available()
		}
		if reserved+bytes > l.Budget || (avail >= 0 && bytes > avail-l.Margin) {
			return nil, &BusyError{Need: bytes, Reserved: reserved, Budget: l.Budget, Available: avail}
		}
		return append(entries, Entry{PID: os.Getpid(), JobID: jobID, Bytes: bytes, Since: time.Now()}), nil
	})
	if err != nil {
		return nil, err
	}
	return func() error { return l.release(jobID) }, nil
}

func (l *Ledger) release(jobID string) error {
	return l.update(func(entries []Entry) ([]Entry, error) {
		pid := os.Getpid()
		for i, e := range entries {
			if e.PID == pid && e.JobID == jobID {
				return append(entries[:i], entries[i+1:]...), nil
			}
		}
		return entries, nil
	})
}

// Entries returns the live reservations.
func (l *Ledger) Entries() ([]Entry, error) {
	var out []Entry
	err := l.update(func(entries []Entry) ([]Entry, error) {
		out = entries
		return entries, nil
	})
	return out, err
}

// update runs fn over the live entries under the file's lock and writes back what it returns;
// an error from fn leaves the file as it was.
func (l *Ledger) update(fn func([]Entry) ([]Entry, error)) error {
	path := l.Path
	if path == "" {
		path = DefaultPath
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("memory ledger: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("memory ledger: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("memory ledger %s: lock: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("memory ledger %s: %w", path, err)
	}
	var entries []Entry
	if len(b) > 0 && json.Unmarshal(b, &entries) != nil {
		entries = nil // a torn or foreign file: start over (its writers' reservations are lost, not wrongly kept)
	}
	live := entries[:0]
	for _, e := range entries {
		if alive(e.PID) {
			live = append(live, e)
		}
	}
	next, err := fn(live)
	if err != nil {
		return err
	}
	out, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("memory ledger %s: %w", path, err)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return fmt.Errorf("memory ledger %s: %w", path, err)
	}
	return nil
}

// alive reports whether a process with pid exists (on this host: the ledger is per host).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
