package monitor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/gpujobs/gpujobs/jobs"
)

// DefaultStorePath is where serve keeps results and report reads them.
const DefaultStorePath = "results/results.jsonl"

// Record is one valid result: the decoded form for the aggregates and the compact JSON line that
// the store keeps, so fields added by newer producers survive in the file.
type Record struct {
	Result jobs.Result
	Line   []byte // compact JSON, no newline
}

// ErrInvalidResult marks a message that is not a result; the consumer dead-letters it.
var ErrInvalidResult = errors.New("not a valid result")

// ParseRecord decodes one message body. A result needs a job_id, a job_type and a status.
func ParseRecord(body []byte) (Record, error) {
	var r jobs.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalidResult, err)
	}
	switch {
	case r.JobID == "":
		return Record{}, fmt.Errorf("%w: job_id is missing", ErrInvalidResult)
	case r.JobType == "":
		return Record{}, fmt.Errorf("%w: job_type is missing", ErrInvalidResult)
	case r.Status == "":
		return Record{}, fmt.Errorf("%w: status is missing", ErrInvalidResult)
	}
	if !bytes.ContainsAny(body, "\r\n") {
		return Record{Result: r, Line: body}, nil // valid JSON on one line already
	}
	var line bytes.Buffer
	if err := json.Compact(&line, body); err != nil { // cannot fail after Unmarshal succeeded
		return Record{}, fmt.Errorf("%w: %v", ErrInvalidResult, err)
	}
	return Record{Result: r, Line: line.Bytes()}, nil
}

// Store is the monitor's durable state: an append-only JSON-lines file with one result per line,
// and the set of job IDs in it. A result is acknowledged to RabbitMQ only after Append returns,
// that is after it is fsynced; the job-ID index turns redeliveries into no-ops. The file is
// locked, so two monitors cannot interleave their writes to it.
type Store struct {
	path string

	mu    sync.Mutex
	f     *os.File
	index map[string]struct{}
	buf   []byte
}

// LoadStats says what OpenStore found in the file.
type LoadStats struct {
	Results    int   // distinct results loaded
	Duplicates int   // lines whose job_id came earlier in the file (ignored)
	Corrupt    int   // complete lines that are not results (skipped, left in the file)
	Truncated  int64 // bytes of a torn last line cut off (a write that was never acknowledged)
}

// OpenStore opens (creating if needed) the store at path, calls load for each distinct result in
// file order, and leaves the file ready for appends. A last line without its newline is a write
// that a crash interrupted before its fsync, so before the message was acknowledged: it is cut
// off, and RabbitMQ delivers that message again.
func OpenStore(path string, load func(Record)) (*Store, LoadStats, error) {
	var st LoadStats
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, st, fmt.Errorf("create store directory: %w", err)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, st, fmt.Errorf("open store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, st, fmt.Errorf("store %s is in use by another monitor: %w", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, st, err
		}
	}
	s := &Store{path: path, f: f, index: map[string]struct{}{}}
	good, err := s.load(load, &st)
	if err != nil {
		f.Close()
		return nil, st, fmt.Errorf("read store %s: %w", path, err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, st, err
	}
	if end > good {
		st.Truncated = end - good
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, st, fmt.Errorf("cut the torn last line of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, st, err
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, st, err
	}
	return s, st, nil
}

// load reads every complete line and returns the offset just past the last one.
func (s *Store) load(fn func(Record), st *LoadStats) (int64, error) {
	r := bufio.NewReaderSize(s.f, 1<<20)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return off, nil // a partial line (len(line) > 0) is the torn write
		}
		if err != nil {
			return 0, err
		}
		off += int64(len(line))
		body := bytes.TrimSpace(line)
		if len(body) == 0 {
			continue
		}
		rec, err := ParseRecord(body)
		if err != nil {
			st.Corrupt++
			continue
		}
		if _, dup := s.index[rec.Result.JobID]; dup {
			st.Duplicates++
			continue
		}
		s.index[rec.Result.JobID] = struct{}{}
		st.Results++
		if fn != nil {
			fn(rec)
		}
	}
}

// Append writes the records whose job IDs the store does not hold yet (the first of several with
// the same ID within recs wins), fsyncs, and returns them. Nothing is returned before the data is
// on disk; an error means the store can no longer promise that, and the monitor must stop.
func (s *Store) Append(recs []Record) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, errors.New("store is closed")
	}
	added := make([]Record, 0, len(recs))
	batch := map[string]struct{}{}
	s.buf = s.buf[:0]
	for _, r := range recs {
		id := r.Result.JobID
		if _, ok := s.index[id]; ok {
			continue
		}
		if _, ok := batch[id]; ok {
			continue
		}
		batch[id] = struct{}{}
		s.buf = append(s.buf, r.Line...)
		s.buf = append(s.buf, '\n')
		added = append(added, r)
	}
	if len(added) == 0 {
		return nil, nil
	}
	if _, err := s.f.Write(s.buf); err != nil {
		return nil, fmt.Errorf("append to %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", s.path, err)
	}
	for id := range batch {
		s.index[id] = struct{}{}
	}
	return added, nil
}

// Len returns the number of distinct results stored.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close releases the file (and its lock).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// ReadStore loads a store file without locking or changing it, for reports on a file that a
// running monitor may be appending to; a torn last line is ignored.
func ReadStore(path string, fn func(Record)) (LoadStats, error) {
	var st LoadStats
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	s := &Store{path: path, f: f, index: map[string]struct{}{}}
	_, err = s.load(fn, &st)
	return st, err
}

// syncDir makes a newly created file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
