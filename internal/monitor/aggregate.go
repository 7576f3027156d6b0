package monitor

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// WorkerNone is the worker_type group of results that never reached a worker (e.g. invalid
// params, no GPU worker in time).
const WorkerNone = "none"

// Aggregator holds every distinct result in arrival order and computes the aggregates from
// them on demand. The numbers are exact and independent of arrival order: percentiles and means
// come from the sorted values, so a monitor that caught up after a restart reports the same
// figures as one that saw every result live.
type Aggregator struct {
	now     func() time.Time
	metrics *Metrics

	mu         sync.RWMutex
	results    []jobs.Result
	groups     map[groupKey]*group
	compare    map[compareKey]*compareGroup
	canonical  map[string]json.RawMessage // params as sent → canonical form; most jobs repeat params
	duplicates int64
	malformed  int64
}

type groupKey struct{ jobType, workerType string }

type compareKey struct{ jobType, params string }

// group is one job_type × worker_type cell.
type group struct {
	results, completed, failed, canceled, fallbacks int
	times                                           []float64 // processing_time of completed results
	rates                                           []float64 // headline rate of completed results
	unit                                            string
}

// compareGroup holds the completed runs of one job type with one set of params.
type compareGroup struct {
	params   json.RawMessage
	cpu, gpu []float64
}

// NewAggregator returns an empty aggregator; metrics may be nil.
func NewAggregator(metrics *Metrics) *Aggregator {
	return &Aggregator{
		now:       time.Now,
		metrics:   metrics,
		groups:    map[groupKey]*group{},
		compare:   map[compareKey]*compareGroup{},
		canonical: map[string]json.RawMessage{},
	}
}

// SetClock replaces time.Now, for tests of the last-minute throughput.
func (a *Aggregator) SetClock(now func() time.Time) { a.now = now }

// Add counts results. The caller has already de-duplicated them (the store does).
func (a *Aggregator) Add(results ...jobs.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range results {
		a.add(r)
	}
}

// AddRecords counts the results of records.
func (a *Aggregator) AddRecords(recs []Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		a.add(r.Result)
	}
}

func (a *Aggregator) add(r jobs.Result) {
	a.results = append(a.results, r)
	wt := workerType(r)
	k := groupKey{r.JobType, wt}
	g := a.groups[k]
	if g == nil {
		g = &group{}
		a.groups[k] = g
	}
	g.results++
	if r.Fallback != "" {
		g.fallbacks++
	}
	switch r.Status {
	case jobs.StatusCompleted:
		g.completed++
		g.times = append(g.times, r.ProcessingTime)
		if v, unit := r.Rate(); unit != "" {
			g.rates = append(g.rates, v)
			g.unit = unit
		}
		a.addComparable(r)
	case jobs.StatusFailed:
		g.failed++
	case jobs.StatusCanceled:
		g.canceled++
	}
	if a.metrics != nil {
		a.metrics.observe(r, wt)
	}
}

// addComparable files a completed run under its job type and canonical params. Fallback runs
// ran on a CPU: they are CPU runs, never GPU ones.
func (a *Aggregator) addComparable(r jobs.Result) {
	params, ok := a.canonical[string(r.Params)]
	if !ok {
		if len(a.canonical) >= maxCanonicalCache {
			clear(a.canonical)
		}
		params = CanonicalParams(r.Params)
		a.canonical[string(r.Params)] = params
	}
	k := compareKey{r.JobType, string(params)}
	c := a.compare[k]
	if c == nil {
		c = &compareGroup{params: params}
		a.compare[k] = c
	}
	switch {
	case r.WorkerType == jobs.WorkerTypeGPU && r.Fallback == "":
		c.gpu = append(c.gpu, r.ProcessingTime)
	case r.WorkerType == jobs.WorkerTypeCPU:
		c.cpu = append(c.cpu, r.ProcessingTime)
	}
}

// maxCanonicalCache bounds the params cache, for job streams whose params never repeat.
const maxCanonicalCache = 4096

// CountDuplicates records results that were delivered again and not counted.
func (a *Aggregator) CountDuplicates(n int) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	a.duplicates += int64(n)
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.duplicates.Add(float64(n))
	}
}

// CountMalformed records a message that was dead-lettered.
func (a *Aggregator) CountMalformed() {
	a.mu.Lock()
	a.malformed++
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.malformed.Inc()
	}
}

func workerType(r jobs.Result) string {
	if r.WorkerType == "" {
		return WorkerNone
	}
	return r.WorkerType
}

// CanonicalParams re-marshals params with sorted keys and no spaces, so two jobs with the same
// params compare equal however they were written. Empty params are {}.
func CanonicalParams(p json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(p)) == 0 {
		return json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber() // keep 1e3 and 1000 apart rather than lose precision on big integers
	var v any
	if err := d.Decode(&v); err != nil {
		return p
	}
	out, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		return p
	}
	return out
}

// Len returns the number of distinct results.
func (a *Aggregator) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.results)
}

// Since returns the results after the first seq ones, in arrival order, and the new sequence
// number (the count of results so far): the SSE stream's cursor.
func (a *Aggregator) Since(seq int) ([]jobs.Result, int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	seq = min(max(seq, 0), len(a.results))
	return slices.Clone(a.results[seq:]), len(a.results)
}
