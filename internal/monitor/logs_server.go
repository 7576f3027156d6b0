package monitor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/jobs"
)

// SetLogs serves the job logs of store; connected reports the log consumer for /healthz.
func (s *Server) SetLogs(store *LogStore, connected func() bool) {
	s.logs, s.logsConnected = store, connected
}

func (s *Server) logRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/jobs/{id}/logs", s.jobLog)
	mux.HandleFunc("GET /api/jobs/{id}/logs/stream", s.jobLogStream)
}

// logQuery is what the log endpoints were asked.
type logQuery struct {
	jobID   string
	attempt int   // 0: every attempt
	after   int64 // seq; with attempt only
	limit   int   // 0: all
}

func parseLogQuery(r *http.Request) (logQuery, error) {
	q := logQuery{jobID: r.PathValue("id")}
	if err := jobs.ValidateJobID(q.jobID); err != nil {
		return q, err
	}
	v := r.URL.Query()
	if a := v.Get("attempt"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 || n > joblogs.MaxAttempt {
			return q, fmt.Errorf("attempt=%q: want 1..%d", a, joblogs.MaxAttempt)
		}
		q.attempt = n
	}
	if a := v.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("after=%q: want a line's seq (0 or more)", a)
		}
		if q.attempt == 0 {
			return q, fmt.Errorf("after=%s needs attempt=N: seqs count per attempt", a)
		}
		q.after = n
	}
	if a := v.Get("limit"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 {
			return q, fmt.Errorf("limit=%q: want a count of lines (0 for all)", a)
		}
		q.limit = n
	}
	return q, nil
}

// jobLog answers GET /api/jobs/{id}/logs: the job's lines as JSON lines (application/x-ndjson,
// one joblogs.Line per line) in the order they were stored, attempt by attempt as they ran;
// attempt=N keeps one attempt, after=SEQ (with attempt) the lines after that seq, limit=N the
// first N. 404 when the monitor holds no line of the job.
func (s *Server) jobLog(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "attempt", "after", "limit") {
		return
	}
	q, err := parseLogQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var bw *bufio.Writer
	var enc *json.Encoder
	sent := 0
	_, err = s.logs.Read(q.jobID, LogCursor{}, func(_ int64, l *joblogs.Line, _ *joblogs.End) bool {
		if bw == nil {
			h := w.Header()
			h.Set("Content-Type", "application/x-ndjson")
			h.Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			bw = bufio.NewWriterSize(w, 64<<10)
			enc = json.NewEncoder(bw)
			enc.SetEscapeHTML(false)
		}
		if l == nil || (q.attempt != 0 && l.Attempt != q.attempt) || (q.attempt != 0 && l.Seq <= q.after) {
			return true
		}
		enc.Encode(l) //nolint:errcheck // the client went away: the read ends with the request
		sent++
		return q.limit == 0 || sent < q.limit
	})
	if bw != nil {
		bw.Flush() //nolint:errcheck
		return
	}
	switch {
	case errors.Is(err, ErrNoLog):
		writeError(w, http.StatusNotFound, fmt.Errorf("no log lines stored for job %s (yet)", q.jobID))
	case err != nil:
		s.logger.Error("cannot read a job's log", zap.String("job_id", q.jobID), zap.Error(err))
		writeError(w, http.StatusInternalServerError, fmt.Errorf("read the log of %s: %w", q.jobID, err))
	default:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}

// jobLogStream answers GET /api/jobs/{id}/logs/stream: server-sent events of the job's log,
// from its start (or after the Last-Event-ID of a reconnecting client), then following it:
// "line" events (id: the line's position in the job's log, data: a joblogs.Line) and "end"
// events (an attempt's log is complete; data: a joblogs.End). attempt=N keeps one attempt. The
// stream does not end with the job: a retry may add another attempt.
func (s *Server) jobLogStream(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "attempt") {
		return
	}
	q, err := parseLogQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var last int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if last, err = strconv.ParseInt(v, 10, 64); err != nil || last < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("Last-Event-ID %q: want a position in the log", v))
			return
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	wake, unsubscribe := s.logs.Subscribe(q.jobID)
	defer unsubscribe()
	keepAlive, expired, stop := s.startStream(w)
	defer stop()
	var cursor LogCursor
	for {
		cursor, err = s.logs.Read(q.jobID, cursor, func(pos int64, l *joblogs.Line, e *joblogs.End) bool {
			if pos <= last {
				return true
			}
			id := strconv.FormatInt(pos, 10)
			switch {
			case l != nil && (q.attempt == 0 || l.Attempt == q.attempt):
				s.event(w, id, "line", l)
			case e != nil && (q.attempt == 0 || e.Attempt == q.attempt):
				s.event(w, id, "end", e)
			}
			last = pos
			return r.Context().Err() == nil
		})
		if err != nil && !errors.Is(err, ErrNoLog) {
			s.logger.Error("cannot read a job's log", zap.String("job_id", q.jobID), zap.Error(err))
			s.event(w, "", "monitor_error", map[string]string{"error": "read the log: " + err.Error()})
			flusher.Flush()
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-expired:
			return
		case <-wake:
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		}
	}
}
