package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// The monitor links no Temporal client, so it does not compute where queued jobs stand: a
// scheduler worker does (jobclient.Snapshot, from the jobs' own states and the queues' pollers)
// and serves it on its health address; /api/queue fetches it from there, validates it like any
// result read from the network, and passes it on.

// maxQueueBody bounds what the monitor reads of a scheduler's answer.
const maxQueueBody = 16 << 20

// queueFetchTimeout bounds one request to the scheduler worker.
const queueFetchTimeout = 25 * time.Second

// QueueSource fetches queue snapshots from a scheduler worker's health address.
type QueueSource struct {
	URL    string // e.g. http://127.0.0.1:8091, the scheduler's --health-addr
	Client *http.Client
}

// ParseSchedulerURL checks --scheduler-url: an http(s) URL of a host, nothing else.
func ParseSchedulerURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("--scheduler-url %q: want http://HOST:PORT, a scheduler worker's --health-addr", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// Snapshot asks the scheduler for the queues now.
func (q *QueueSource) Snapshot(ctx context.Context) (jobs.QueueSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, queueFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.URL+"/api/queue", nil)
	if err != nil {
		return jobs.QueueSnapshot{}, err
	}
	hc := q.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return jobs.QueueSnapshot{}, fmt.Errorf("ask the scheduler worker at %s: %w", q.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQueueBody+1))
	if err != nil {
		return jobs.QueueSnapshot{}, fmt.Errorf("read the scheduler worker's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return jobs.QueueSnapshot{}, fmt.Errorf("the scheduler worker at %s answered %s: %.200s", q.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	if len(body) > maxQueueBody {
		return jobs.QueueSnapshot{}, fmt.Errorf("the scheduler worker's answer is over %d bytes", maxQueueBody)
	}
	var snap jobs.QueueSnapshot
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return jobs.QueueSnapshot{}, fmt.Errorf("the scheduler worker's answer is not a queue snapshot: %w", err)
	}
	if err := snap.Validate(time.Now()); err != nil {
		return jobs.QueueSnapshot{}, fmt.Errorf("the scheduler worker's queue snapshot is invalid: %w", err)
	}
	return snap, nil
}

// SetQueue makes /api/queue answer from q (nil: it says how to turn it on).
func (s *Server) SetQueue(q *QueueSource) { s.queue = q }

// QueueView is /api/queue's answer: the snapshot, narrowed by ?queue= and ?job_id=.
type QueueView struct {
	jobs.QueueSnapshot
	Source string `json:"source"` // the scheduler worker it came from
}

func (s *Server) queueAPI(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "queue", "job_id") {
		return
	}
	q := r.URL.Query()
	queue, jobID := q.Get("queue"), q.Get("job_id")
	if queue != "" {
		if err := jobs.ValidateQueue(queue); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	if jobID != "" {
		if err := jobs.ValidateJobID(jobID); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	if s.queue == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("queue predictions come from a scheduler worker: start the monitor with --scheduler-url http://HOST:PORT (env MONITOR_SCHEDULER_URL), the scheduler's --health-addr"))
		return
	}
	snap, err := s.queue.Snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	kept := []jobs.Prediction{}
	for _, p := range snap.Jobs {
		if (queue == "" || p.Queue == queue) && (jobID == "" || p.JobID == jobID) {
			kept = append(kept, p)
		}
	}
	if jobID != "" && len(kept) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("job %s is not on a queue: not submitted, still being scheduled, or ended (see /api/results)", jobID))
		return
	}
	snap.Jobs = kept
	s.reply(w, http.StatusOK, QueueView{QueueSnapshot: snap, Source: s.queue.URL})
}
