package monitor

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
)

//go:embed web
var webFS embed.FS

// DefaultLimit is how many results /api/results and /api/failed return without ?limit=.
const DefaultLimit = 100

// Server is the monitor's HTTP side: the JSON API, the SSE stream, /metrics and the dashboard.
type Server struct {
	agg       *Aggregator
	metrics   *Metrics
	connected func() bool
	store     string
	logger    *zap.Logger

	mu   sync.Mutex
	subs map[chan struct{}]struct{}

	logs          *LogStore    // job logs (SetLogs); nil: no log endpoints
	logsConnected func() bool  // the log consumer's state
	sweeps        sweepIndex   // /api/sweeps (sweeps.go)
	queue         *QueueSource // /api/queue (queue.go); nil: not configured

	// SummaryEvery is the least time between two summary events of one stream.
	SummaryEvery time.Duration
	// KeepAlive is how often an idle stream gets a comment, so proxies and clients see it alive.
	KeepAlive time.Duration
	// MaxStreamAge ends a stream after this long (0: never); clients reconnect and resume with
	// Last-Event-ID. Headless browsers need it: they count an open stream as a pending fetch.
	MaxStreamAge time.Duration
}

// NewServer returns the HTTP server's handler state. connected reports the consumer's state
// for /healthz (nil: always disconnected); store names the store file.
func NewServer(agg *Aggregator, metrics *Metrics, connected func() bool, store string, logger *zap.Logger) *Server {
	if connected == nil {
		connected = func() bool { return false }
	}
	return &Server{agg: agg, metrics: metrics, connected: connected, store: store, logger: logger,
		subs: map[chan struct{}]struct{}{}, SummaryEvery: 250 * time.Millisecond, KeepAlive: 15 * time.Second}
}

// Notify wakes the SSE streams after results were added.
func (s *Server) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.subs {
		select {
		case c <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

func (s *Server) subscribe() (chan struct{}, func()) {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[c] = struct{}{}
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		delete(s.subs, c)
		s.mu.Unlock()
	}
}

// Handler routes the API, the stream, /metrics and the dashboard.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/stats", s.stats)
	mux.HandleFunc("GET /api/results", s.results)
	mux.HandleFunc("GET /api/speedup", s.speedup)
	mux.HandleFunc("GET /api/failed", s.failed)
	mux.HandleFunc("GET /api/sweeps", s.sweepsAPI)
	mux.HandleFunc("GET /api/usage", s.usage)
	mux.HandleFunc("GET /api/queue", s.queueAPI)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /healthz", s.health)
	if s.logs != nil {
		s.logRoutes(mux)
	}
	if s.metrics != nil {
		prom := promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{})
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if checkParams(w, r) {
				prom.ServeHTTP(w, r)
			}
		})
	}
	static, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	return mux
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r) {
		return
	}
	s.reply(w, http.StatusOK, s.agg.Stats())
}

func (s *Server) speedup(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r) {
		return
	}
	s.reply(w, http.StatusOK, s.agg.Speedup())
}

func (s *Server) results(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "job_type", "worker_type", "status", "limit", "order") {
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	res, matched := s.agg.Results(f)
	s.reply(w, http.StatusOK, s.page(f, ResultsPage{Matched: matched, Count: len(res), Results: res}))
}

// page adds the job types the monitor holds results of, and a note when the filter names a
// job type among none of them: kinds are open, so a well-formed name is no error, but an empty
// answer must not look like an empty cluster.
func (s *Server) page(f Filter, p ResultsPage) ResultsPage {
	p.JobTypes = s.agg.JobTypes()
	if f.JobType != "" && !slices.Contains(p.JobTypes, f.JobType) {
		known := "none yet"
		if len(p.JobTypes) > 0 {
			known = strings.Join(p.JobTypes, ", ")
		}
		p.Note = fmt.Sprintf("no results of job_type %q; the monitor has results of: %s", f.JobType, known)
	}
	return p
}

func (s *Server) failed(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "job_type", "limit") {
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	all, _ := s.agg.Results(Filter{JobType: f.JobType})
	out := Failed{Failures: []Count{}, ResultsPage: ResultsPage{Results: []jobs.Result{}}}
	counts := map[string]int{}
	for _, res := range all {
		if res.Status == jobs.StatusCompleted {
			continue
		}
		counts[errorType(res)]++
		out.Matched++
		if f.Limit == 0 || len(out.Results) < f.Limit {
			out.Results = append(out.Results, res)
		}
	}
	out.Count = len(out.Results)
	out.Failures = failureCounts(counts)
	out.ResultsPage = s.page(f, out.ResultsPage)
	s.reply(w, http.StatusOK, out)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r) {
		return
	}
	h := Health{Status: "ok", RabbitMQ: "disconnected", Results: s.agg.Len(), Store: s.store, RejectedAtLoad: s.agg.RejectedAtLoad()}
	if s.connected() {
		h.RabbitMQ = "connected"
	}
	if s.logsConnected != nil {
		h.LogQueue = map[bool]string{true: "connected", false: "disconnected"}[s.logsConnected()]
	}
	s.reply(w, http.StatusOK, h)
}

// events streams results as server-sent events: "result" events (id: the result's sequence
// number, data: the result) and "summary" events (data: Summary). Parameters: replay=N starts
// with the last N stored results; after=SEQ (or the Last-Event-ID header of a reconnecting
// EventSource) resumes after that sequence number; results=0 sends summaries only.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "replay", "after", "results") {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming unsupported"))
		return
	}
	q := r.URL.Query()
	wantResults := q.Get("results") != "0"
	wake, unsubscribe := s.subscribe()
	defer unsubscribe()
	cursor := s.agg.Len()
	if v := firstNonEmpty(r.Header.Get("Last-Event-ID"), q.Get("after")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after=%q: want a sequence number", v))
			return
		}
		cursor = min(n, cursor)
	} else if v := q.Get("replay"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("replay=%q: want a count", v))
			return
		}
		cursor = max(cursor-n, 0)
	}

	keepAlive, expired, stop := s.startStream(w)
	defer stop()
	summaryTimer := time.NewTimer(0) // the first summary goes out at once
	defer summaryTimer.Stop()
	var lastSummary time.Time
	summaryPending := true
	for {
		if wantResults {
			results, next := s.agg.Since(cursor)
			for i, res := range results {
				s.event(w, strconv.Itoa(cursor+i+1), "result", res)
			}
			if len(results) > 0 {
				summaryPending = true
			}
			cursor = next
		}
		if summaryPending && time.Since(lastSummary) >= s.SummaryEvery {
			s.event(w, "", "summary", s.agg.Summary())
			lastSummary, summaryPending = time.Now(), false
		}
		flusher.Flush()
		if summaryPending {
			summaryTimer.Reset(s.SummaryEvery - time.Since(lastSummary))
		}
		select {
		case <-r.Context().Done():
			return
		case <-expired:
			return
		case <-wake:
			summaryPending = summaryPending || !wantResults
		case <-summaryTimer.C:
		case <-keepAlive.C:
			// The last-minute throughput moves without new results: refresh it too.
			summaryPending = true
			fmt.Fprint(w, ": keep-alive\n\n")
		}
	}
}

// event writes one server-sent event; a value that cannot be encoded becomes a "monitor_error"
// event (with the same id, so the stream's cursor moves on) instead of an empty one. (Not
// "error": an EventSource reports its connection errors under that name.)
func (s *Server) event(w io.Writer, id, name string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.logger.Error("cannot encode an event", zap.String("event", name), zap.String("id", id), zap.Error(err))
		b, _ = json.Marshal(map[string]string{"error": fmt.Sprintf("cannot encode %s event %s: %v", name, id, err)})
		name = "monitor_error"
	}
	if id != "" {
		fmt.Fprintf(w, "id: %s\n", id)
	}
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}

func parseFilter(r *http.Request) (Filter, error) {
	q := r.URL.Query()
	f := Filter{JobType: q.Get("job_type"), WorkerType: q.Get("worker_type"), Status: q.Get("status"), Limit: DefaultLimit}
	if f.JobType != "" {
		if err := jobs.ValidateKindName(f.JobType); err != nil {
			return f, fmt.Errorf("job_type=%q: %w", f.JobType, err)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit=%q: want a count (0 for all)", v)
		}
		f.Limit = n
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		f.Oldest = true
	default:
		return f, fmt.Errorf("order=%q: want asc or desc", q.Get("order"))
	}
	if f.Status != "" && !slices.Contains(jobs.Statuses, f.Status) {
		return f, fmt.Errorf("status=%q: want %s", f.Status, orList(jobs.Statuses))
	}
	if f.WorkerType != "" && f.WorkerType != WorkerNone && !slices.Contains(jobs.WorkerTypes, f.WorkerType) {
		return f, fmt.Errorf("worker_type=%q: want %s", f.WorkerType, orList(append(slices.Clone(jobs.WorkerTypes), WorkerNone)))
	}
	return f, nil
}

// checkParams rejects query parameters the endpoint does not know, so a typo is not silently
// ignored.
func checkParams(w http.ResponseWriter, r *http.Request, known ...string) bool {
	for k := range r.URL.Query() {
		if !slices.Contains(known, k) {
			msg := "takes no parameters"
			if len(known) > 0 {
				msg = "knows " + strings.Join(known, ", ")
			}
			writeError(w, http.StatusBadRequest, fmt.Errorf("unknown parameter %q: %s %s", k, r.URL.Path, msg))
			return false
		}
	}
	return true
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// reply writes v as JSON, or a 500 with the reason when v cannot be encoded.
func (s *Server) reply(w http.ResponseWriter, code int, v any) {
	if err := writeJSON(w, code, v); err != nil {
		s.logger.Error("cannot encode a response", zap.Error(err))
	}
}

// writeJSON encodes v before it sends anything, so a value that cannot be encoded is answered
// with a 500 and a JSON error, never with a 200 and a truncated body. The error it returns is
// that encoding error; a client that went away is not one.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	if err != nil {
		buf.Reset()
		code = http.StatusInternalServerError
		json.NewEncoder(&buf).Encode(map[string]string{"error": "cannot encode the response: " + err.Error()}) //nolint:errcheck // a string map
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
	return err
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()}) //nolint:errcheck // a string map
}

// startStream begins a server-sent-event response: its headers, the client's retry delay, the
// keep-alive ticker and the channel that ends a stream older than MaxStreamAge (nil: never).
func (s *Server) startStream(w http.ResponseWriter) (keepAlive *time.Ticker, expired <-chan time.Time, stop func()) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n\n")
	keepAlive = time.NewTicker(s.KeepAlive)
	var t *time.Timer
	if s.MaxStreamAge > 0 {
		t = time.NewTimer(s.MaxStreamAge)
		expired = t.C
	}
	return keepAlive, expired, func() {
		keepAlive.Stop()
		if t != nil {
			t.Stop()
		}
	}
}
