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
	"time"

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

// ParseRecord decodes one message body and validates it against the monitor's clock; see
// ParseRecordAt.
func ParseRecord(body []byte) (Record, error) { return ParseRecordAt(body, time.Now()) }

// ParseRecordAt decodes one message body. A message that is not a result (not JSON, no job_id,
// job_type or status, over MaxResultBytes) is ErrMalformed; a result that fails Validate at now
// is ErrRejected. Fields this version does not know are kept in the record's line.
func ParseRecordAt(body []byte, now time.Time) (Record, error) {
	if len(body) > MaxResultBytes {
		return Record{}, fmt.Errorf("%w: %d bytes, more than the %d a result may have", ErrMalformed, len(body), MaxResultBytes)
	}
	var r jobs.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case r.JobID == "":
		return Record{}, fmt.Errorf("%w: job_id is missing", ErrMalformed)
	case r.JobType == "":
		return Record{}, fmt.Errorf("%w: job_type is missing", ErrMalformed)
	case r.Status == "":
		return Record{}, fmt.Errorf("%w: status is missing", ErrMalformed)
	}
	if err := Validate(r, now); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if !bytes.ContainsAny(body, "\r\n") {
		return Record{Result: r, Line: body}, nil // valid JSON on one line already
	}
	var line bytes.Buffer
	if err := json.Compact(&line, body); err != nil { // cannot fail after Unmarshal succeeded
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
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
	Rejected   int   // results that fail Validate, e.g. stored by an older monitor (skipped, left in the file)
	Truncated  int64 // bytes of a torn last line cut off (a write that was never acknowledged)
	// Skipped are the first maxSkippedReported corrupt or rejected lines, with the reason.
	Skipped []SkippedLine
	// Counters are the counts kept beside the store; CountersErr says why
	// they could not be read, when so (counting then starts from zero: never fatal).
	Counters    Counters
	CountersErr error
}

// SkippedLine is a line of the store that was not loaded.
type SkippedLine struct {
	Line   int // 1-based
	Reason string
}

// NotLoaded counts the lines of the store that were skipped because they are not valid results.
func (st LoadStats) NotLoaded() int { return st.Corrupt + st.Rejected }

const maxSkippedReported = 20

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
	st.Counters, st.CountersErr = readCounters(CountersPath(path))
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

// load reads every complete line and returns the offset just past the last one. Lines that are
// not valid results are skipped and reported in st, never fatal: the store must load whatever
// an older monitor (or a hand edit) left in it.
func (s *Store) load(fn func(Record), st *LoadStats) (int64, error) {
	r := bufio.NewReaderSize(s.f, 1<<20)
	now := time.Now()
	var off int64
	for n := 1; ; n++ {
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
		rec, err := ParseRecordAt(body, now)
		if err != nil {
			if errors.Is(err, ErrRejected) {
				st.Rejected++
			} else {
				st.Corrupt++
			}
			if len(st.Skipped) < maxSkippedReported {
				st.Skipped = append(st.Skipped, SkippedLine{Line: n, Reason: err.Error()})
			}
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
	st.Counters, st.CountersErr = readCounters(CountersPath(path))
	_, err = s.load(fn, &st)
	return st, err
}

// CountersPath is the file beside the store that keeps the counters (Counters) across restarts.
func CountersPath(store string) string { return store + ".counters" }

func readCounters(path string) (Counters, error) {
	var c Counters
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read counters: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Counters{}, fmt.Errorf("counters file %s: %w", path, err)
	}
	if c.Duplicates < 0 || c.Malformed < 0 || c.Rejected < 0 {
		return Counters{}, fmt.Errorf("counters file %s holds negative counts: %s", path, bytes.TrimSpace(b))
	}
	return c, nil
}

// SaveCounters replaces the counters file beside the store (write, fsync, rename), so a
// restarted monitor goes on counting from there. Only the holder of the store's lock writes it.
func (s *Store) SaveCounters(c Counters) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("store is closed")
	}
	path := CountersPath(s.path)
	b, _ := json.Marshal(c) // int64 fields: cannot fail
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("save counters: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save counters to %s: %w", path, err)
	}
	return nil
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
