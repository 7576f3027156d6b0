package monitor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpujobs/gpujobs/internal/joblogs"
)

// Defaults of the log store's bounds.
const (
	// DefaultLogMaxTotal bounds the disk that all job logs use together: past it the logs
	// written longest ago are deleted, whole, until 90% of it is used.
	DefaultLogMaxTotal = 10 << 30
	// DefaultLogMaxJob bounds one job's log, all attempts together (5 attempts of the workers'
	// 64 MiB fit); lines past it are dropped and counted.
	DefaultLogMaxJob = 512 << 20
	// maxLoadedLogs bounds the job-log indexes kept in memory; others are reloaded on demand.
	maxLoadedLogs = 10000
)

// LogStore keeps each job's log in its own append-only JSON-lines file, <dir>/<job_id>.jsonl
// (a job ID that is not a plain file name is hashed: ~<sha256>.jsonl). A line of the file is a
// joblogs.Line or a joblogs.End, as the workers published them, in the order they arrived;
// its position (1-based line number) is the id of its SSE event. Append fsyncs before it
// returns, so the consumer acknowledges only what is on disk; the index of a job's log (which
// (attempt, seq) it holds) is read from its file the first time the job is touched after a
// start, so a restart reloads nothing but the directory listing, and a redelivered line is
// dropped as a duplicate.
type LogStore struct {
	dir               string
	maxTotal, maxJob  int64
	onEvict, onCapped func(jobID string)
	lock              *os.File // flocked: one monitor per directory

	mu    sync.Mutex
	total int64
	files map[string]*logFile // every log file: size and last write, for the total and eviction
	jobs  map[string]*jobLog  // loaded indexes, by file name
	subs  map[string]map[chan struct{}]struct{}
	gen   uint64
}

type logFile struct {
	size     int64
	modified time.Time
}

// jobLog is what the store knows of one job's file once it has read it.
type jobLog struct {
	name string
	gen  uint64 // changes when the file is deleted and written anew

	mu       sync.Mutex
	loaded   bool
	size     int64 // bytes of complete, fsynced lines
	records  int64 // complete lines
	attempts map[int]*attemptLog
	capped   bool
	used     time.Time
}

// attemptLog tells which seqs of an attempt are stored: all up to contig, and those in above
// (lines that arrived out of order); ended once its End is stored.
type attemptLog struct {
	contig int64
	above  map[int64]struct{}
	ended  bool
}

func (a *attemptLog) has(seq int64) bool {
	if seq <= a.contig {
		return true
	}
	_, ok := a.above[seq]
	return ok
}

func (a *attemptLog) add(seq int64) {
	if seq != a.contig+1 {
		if a.above == nil {
			a.above = map[int64]struct{}{}
		}
		a.above[seq] = struct{}{}
		return
	}
	a.contig++
	for {
		if _, ok := a.above[a.contig+1]; !ok {
			break
		}
		delete(a.above, a.contig+1)
		a.contig++
	}
}

// LogStoreStats says what OpenLogStore found.
type LogStoreStats struct {
	Jobs  int
	Bytes int64
}

// OpenLogStore opens (creating) the log directory and lists its files; it reads none of them.
// maxTotal and maxJob of 0 mean the defaults.
func OpenLogStore(dir string, maxTotal, maxJob int64) (*LogStore, LogStoreStats, error) {
	if maxTotal <= 0 {
		maxTotal = DefaultLogMaxTotal
	}
	if maxJob <= 0 {
		maxJob = min(DefaultLogMaxJob, maxTotal)
	}
	var st LogStoreStats
	if maxJob > maxTotal {
		return nil, st, fmt.Errorf("a job's log may use %d bytes, more than the %d all logs may use together", maxJob, maxTotal)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, st, fmt.Errorf("create log directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, st, fmt.Errorf("open the log directory's lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, st, fmt.Errorf("log directory %s is in use by another monitor: %w", dir, err)
	}
	s := &LogStore{dir: dir, maxTotal: maxTotal, maxJob: maxJob, lock: lock, files: map[string]*logFile{},
		jobs: map[string]*jobLog{}, subs: map[string]map[chan struct{}]struct{}{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, st, fmt.Errorf("list log directory: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		s.files[e.Name()] = &logFile{size: info.Size(), modified: info.ModTime()}
		s.total += info.Size()
	}
	st.Jobs, st.Bytes = len(s.files), s.total
	return s, st, nil
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// logFileName is the file of a job's log: the job ID itself when it is a plain file name, else
// a hash of it (job IDs may hold any printable character, "/" and ".." included).
func logFileName(jobID string) string {
	if plainName.MatchString(jobID) && len(jobID) <= 200 {
		return jobID + ".jsonl"
	}
	sum := sha256.Sum256([]byte(jobID))
	return "~" + hex.EncodeToString(sum[:20]) + ".jsonl"
}

// Close releases the directory's lock.
func (s *LogStore) Close() error { return s.lock.Close() }

// Dir is the log directory.
func (s *LogStore) Dir() string { return s.dir }

// Total returns the bytes all logs use now.
func (s *LogStore) Total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// job returns the index of a job's log (not loaded yet, perhaps).
func (s *LogStore) job(jobID string) *jobLog {
	name := logFileName(jobID)
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[name]
	if j == nil {
		s.gen++
		j = &jobLog{name: name, gen: s.gen, attempts: map[int]*attemptLog{}}
		s.jobs[name] = j
	}
	return j
}

// load reads the job's file once: the index of what it holds, and a torn last line (a write
// that a crash interrupted, so never acknowledged) cut off. j.mu is held.
func (s *LogStore) load(j *jobLog) error {
	if j.loaded {
		return nil
	}
	path := filepath.Join(s.dir, j.name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		j.loaded = true
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off, n int64
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any valid record: a corrupt line, kept in the file and skipped.
			rest, err2 := r.ReadBytes('\n')
			if err2 != nil {
				break
			}
			off += int64(len(line) + len(rest))
			n++
			continue
		}
		if err != nil {
			break // io.EOF: a partial line, if any, is the torn write
		}
		off += int64(len(line))
		n++
		if l, e, ok := decodeLogRecord(line); ok {
			if e != nil {
				j.attempt(e.Attempt).ended = true
			} else if a := j.attempt(l.Attempt); !a.has(l.Seq) {
				a.add(l.Seq)
			}
		}
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if end > off {
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("cut the torn last line of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return err
		}
		s.mu.Lock()
		if lf := s.files[j.name]; lf != nil {
			s.total -= lf.size - off
			lf.size = off
		}
		s.mu.Unlock()
	}
	j.size, j.records, j.loaded = off, n, true
	return nil
}

func (j *jobLog) attempt(n int) *attemptLog {
	a := j.attempts[n]
	if a == nil {
		a = &attemptLog{}
		j.attempts[n] = a
	}
	return a
}

// logRecord is a line of a log file: a Line, or an End when EndSeq is set.
type logRecord struct {
	joblogs.Line
	EndSeq *int64 `json:"end_seq"`
}

func decodeLogRecord(b []byte) (joblogs.Line, *joblogs.End, bool) {
	var r logRecord
	if err := json.Unmarshal(b, &r); err != nil || r.JobID == "" || r.Attempt < 1 {
		return joblogs.Line{}, nil, false
	}
	if r.EndSeq != nil {
		return joblogs.Line{}, &joblogs.End{JobID: r.JobID, Attempt: r.Attempt, EndSeq: *r.EndSeq, Time: r.Time}, true
	}
	if r.Seq < 1 {
		return joblogs.Line{}, nil, false
	}
	return r.Line, nil, true
}

// LogAppended says what Append did with a batch.
type LogAppended struct {
	Lines      int // stored
	Ends       int // attempts' ends stored
	Duplicates int // lines and ends the store held already
	Capped     int // lines dropped: their job's log is at its bound
	Bytes      int64
}

// Append stores the messages' lines and ends that are new, in order, each job's with one write
// and one fsync (and the directory's, for a new file), and returns once all are on disk. Then
// it deletes the oldest logs while all of them use more than the total bound. An error means
// the store cannot promise durability any more: the consumer stops.
func (s *LogStore) Append(msgs []joblogs.Message) (LogAppended, error) {
	var out LogAppended
	var order []string
	byJob := map[string][]joblogs.Message{}
	for _, m := range msgs {
		if _, ok := byJob[m.JobID]; !ok {
			order = append(order, m.JobID)
		}
		byJob[m.JobID] = append(byJob[m.JobID], m)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, id := range order {
		j := s.job(id)
		j.mu.Lock()
		err := s.appendJob(j, id, byJob[id], &buf, enc, &out)
		j.mu.Unlock()
		if err != nil {
			return out, err
		}
		s.notify(j.name)
	}
	s.evict(order)
	return out, nil
}

func (s *LogStore) appendJob(j *jobLog, jobID string, msgs []joblogs.Message, buf *bytes.Buffer, enc *json.Encoder, out *LogAppended) error {
	if err := s.load(j); err != nil {
		return fmt.Errorf("read the log of %s: %w", jobID, err)
	}
	j.used = time.Now()
	buf.Reset()
	// The index takes the lines as they are encoded, so a duplicate within the batch is seen
	// too; should the write fail, the consumer stops and the index goes with it.
	var lines, ends int
	for _, m := range msgs {
		a := j.attempt(m.Attempt)
		for _, l := range m.Lines {
			if a.has(l.Seq) {
				out.Duplicates++
				continue
			}
			before := buf.Len()
			enc.Encode(l) //nolint:errcheck // validated strings, ints, a time
			if j.size+int64(buf.Len()) > s.maxJob {
				buf.Truncate(before)
				out.Capped++
				if !j.capped {
					j.capped = true
					if s.onCapped != nil {
						s.onCapped(jobID)
					}
				}
				continue
			}
			a.add(l.Seq)
			lines++
		}
		if m.End != nil {
			if a.ended {
				out.Duplicates++
				continue
			}
			enc.Encode(m.End) //nolint:errcheck
			a.ended = true
			ends++
		}
	}
	if buf.Len() == 0 {
		return nil
	}
	path := filepath.Join(s.dir, j.name)
	created := j.size == 0
	if created {
		if _, err := os.Stat(path); err == nil {
			created = false
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the log of %s: %w", jobID, err)
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = syncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("append to the log of %s: %w", jobID, err)
	}
	n := int64(buf.Len())
	j.size += n
	j.records += int64(lines + ends)
	out.Lines += lines
	out.Ends += ends
	out.Bytes += n
	s.mu.Lock()
	lf := s.files[j.name]
	if lf == nil {
		lf = &logFile{}
		s.files[j.name] = lf
	}
	lf.size += n
	lf.modified = time.Now()
	s.total += n
	s.mu.Unlock()
	return nil
}

// evict deletes whole logs, least recently written first, while all of them use more than
// maxTotal, down to 90% of it; the jobs just written (keep) go last. It also forgets indexes
// beyond maxLoadedLogs that no stream follows. Only the consumer calls it, between appends.
func (s *LogStore) evict(keep []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total > s.maxTotal {
		kept := map[string]bool{}
		for _, id := range keep {
			kept[logFileName(id)] = true
		}
		names := make([]string, 0, len(s.files))
		for n := range s.files {
			names = append(names, n)
		}
		sort.Slice(names, func(a, b int) bool {
			na, nb := names[a], names[b]
			if kept[na] != kept[nb] {
				return kept[nb]
			}
			return s.files[na].modified.Before(s.files[nb].modified)
		})
		target := s.maxTotal / 10 * 9
		for _, n := range names {
			if s.total <= target {
				break
			}
			if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				continue
			}
			s.total -= s.files[n].size
			delete(s.files, n)
			delete(s.jobs, n)
			for c := range s.subs[n] {
				select {
				case c <- struct{}{}:
				default:
				}
			}
			if s.onEvict != nil {
				s.onEvict(n)
			}
		}
	}
	if len(s.jobs) > maxLoadedLogs {
		var idle []*jobLog
		for n, j := range s.jobs {
			if len(s.subs[n]) == 0 {
				idle = append(idle, j)
			}
		}
		sort.Slice(idle, func(a, b int) bool { return idle[a].used.Before(idle[b].used) })
		for _, j := range idle[:min(len(idle), len(s.jobs)-maxLoadedLogs*9/10)] {
			delete(s.jobs, j.name)
		}
	}
}

// Subscribe returns a channel that gets a wake-up after each append to the job's log.
func (s *LogStore) Subscribe(jobID string) (<-chan struct{}, func()) {
	name := logFileName(jobID)
	c := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs[name] == nil {
		s.subs[name] = map[chan struct{}]struct{}{}
	}
	s.subs[name][c] = struct{}{}
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		delete(s.subs[name], c)
		if len(s.subs[name]) == 0 {
			delete(s.subs, name)
		}
		s.mu.Unlock()
	}
}

func (s *LogStore) notify(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.subs[name] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// LogCursor is how far a reader has read a job's log: bytes and records (positions).
type LogCursor struct {
	Offset, Pos int64
	gen         uint64
}

// ErrNoLog means the store holds no line of that job.
var ErrNoLog = errors.New("no log stored")

// Read calls fn with each complete record of the job's log after cursor c, in file order, with
// its position, and returns the cursor after the last one read. A log that was deleted (and
// perhaps written anew) since c was taken is read from its start. fn returning false stops.
func (s *LogStore) Read(jobID string, c LogCursor, fn func(pos int64, l *joblogs.Line, e *joblogs.End) bool) (LogCursor, error) {
	j := s.job(jobID)
	j.mu.Lock()
	if err := s.load(j); err != nil {
		j.mu.Unlock()
		return c, err
	}
	j.used = time.Now()
	size, gen := j.size, j.gen
	j.mu.Unlock()
	if c.gen != gen || c.Offset > size {
		c = LogCursor{gen: gen}
	}
	if size == c.Offset {
		if size == 0 {
			return c, ErrNoLog
		}
		return c, nil
	}
	f, err := os.Open(filepath.Join(s.dir, j.name))
	if errors.Is(err, os.ErrNotExist) {
		return c, ErrNoLog // deleted since
	}
	if err != nil {
		return c, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, c.Offset, size-c.Offset), 256<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			if err != nil && !errors.Is(err, io.EOF) {
				return c, err
			}
			return c, nil
		}
		c.Offset += int64(len(line))
		c.Pos++
		l, e, ok := decodeLogRecord(line)
		if !ok || (e == nil && l.JobID != jobID) || (e != nil && e.JobID != jobID) {
			continue // corrupt, or another job's under a colliding hash
		}
		var lp *joblogs.Line
		if e == nil {
			lp = &l
		}
		if !fn(c.Pos, lp, e) {
			return c, nil
		}
	}
}
