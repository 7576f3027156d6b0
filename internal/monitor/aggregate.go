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

	mu        sync.RWMutex
	results   []jobs.Result
	groups    map[groupKey]*group
	compare   map[compareKey]*compareGroup
	canonical map[string]json.RawMessage // params as sent → canonical form; most jobs repeat params
	counters  Counters
	// rejectedAtLoad counts the lines of the store that were skipped at start.
	rejectedAtLoad int
	prices         Prices // for the usage's cost
}

// Counters count the deliveries that did not become results. The consumer keeps them beside
// the store (Store.SaveCounters), so they survive a restart.
type Counters struct {
	Duplicates int64 `json:"duplicates"` // delivered again, not counted twice
	Malformed  int64 `json:"malformed"`  // not results, dead-lettered
	Rejected   int64 `json:"rejected"`   // results that failed Validate, dead-lettered
}

type groupKey struct{ jobType, workerType string }

type compareKey struct{ jobType, params string }

// group is one job_type × worker_type cell.
type group struct {
	results, completed, failed, canceled, fallbacks int
	times                                           []float64 // processing_time of completed results
	rates                                           []float64 // headline rate of completed results
	unit                                            string
	gpu                                             gpuTelemetry
}

// gpuTelemetry gathers the NVML figures of a group's completed GPU results that carry them.
type gpuTelemetry struct {
	utilMeans []float64 // each result's mean utilisation
	utilPeak  float64
	memPeak   int64
}

func (t *gpuTelemetry) add(r jobs.Result) {
	if r.GPUUtilizationMean == nil {
		return
	}
	t.utilMeans = append(t.utilMeans, *r.GPUUtilizationMean)
	if r.GPUUtilizationPeak != nil {
		t.utilPeak = max(t.utilPeak, *r.GPUUtilizationPeak)
	}
	t.memPeak = max(t.memPeak, r.GPUMemoryPeak)
}

func (t *gpuTelemetry) stats() *GPUTelemetry {
	if len(t.utilMeans) == 0 {
		return nil
	}
	return &GPUTelemetry{Results: len(t.utilMeans), UtilizationMean: mean(sorted(t.utilMeans)), UtilizationPeak: t.utilPeak, MemoryPeak: t.memPeak}
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

// Add counts results. The caller has already de-duplicated them (the store does). A result
// that fails Validate is not counted but refused, as rejected: whoever feeds the aggregator,
// its figures stay finite.
func (a *Aggregator) Add(results ...jobs.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for _, r := range results {
		a.add(r, now)
	}
}

// AddRecords counts the results of records, as Add does.
func (a *Aggregator) AddRecords(recs []Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for _, r := range recs {
		a.add(r.Result, now)
	}
}

func (a *Aggregator) add(r jobs.Result, now time.Time) {
	if Validate(r, now) != nil {
		a.counters.Rejected++
		if a.metrics != nil {
			a.metrics.rejected.Inc()
		}
		return
	}
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
		g.gpu.add(r)
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
	a.counters.Duplicates += int64(n)
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.duplicates.Add(float64(n))
	}
}

// CountMalformed records a message that was not a result and was dead-lettered.
func (a *Aggregator) CountMalformed() {
	a.mu.Lock()
	a.counters.Malformed++
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.malformed.Inc()
	}
}

// CountRejected records a result that failed Validate and was dead-lettered.
func (a *Aggregator) CountRejected() {
	a.mu.Lock()
	a.counters.Rejected++
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.rejected.Inc()
	}
}

// Counters returns the counts of deliveries that did not become results.
func (a *Aggregator) Counters() Counters {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.counters
}

// RestoreCounters adds the counts that an earlier run kept beside the store.
func (a *Aggregator) RestoreCounters(c Counters) {
	a.mu.Lock()
	a.counters.Duplicates += c.Duplicates
	a.counters.Malformed += c.Malformed
	a.counters.Rejected += c.Rejected
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.duplicates.Add(float64(c.Duplicates))
		a.metrics.malformed.Add(float64(c.Malformed))
		a.metrics.rejected.Add(float64(c.Rejected))
	}
}

// SetRejectedAtLoad records how many lines of the store were skipped at start because they are
// not valid results (LoadStats.NotLoaded).
func (a *Aggregator) SetRejectedAtLoad(n int) {
	a.mu.Lock()
	a.rejectedAtLoad = n
	a.mu.Unlock()
	if a.metrics != nil {
		a.metrics.storeRejected.Set(float64(n))
	}
}

// JobTypes lists the job types the aggregator holds results of, sorted.
func (a *Aggregator) JobTypes() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []string{}
	for k := range a.groups {
		if !slices.Contains(out, k.jobType) {
			out = append(out, k.jobType)
		}
	}
	slices.Sort(out)
	return out
}

// RejectedAtLoad returns what SetRejectedAtLoad recorded.
func (a *Aggregator) RejectedAtLoad() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.rejectedAtLoad
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
