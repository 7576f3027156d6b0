package monitor

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// WorkerNone is the worker_type group of results that never reached a worker (e.g. invalid
// params, no GPU worker in time).
const WorkerNone = "none"

// ThroughputWindow is the window of the "last minute" throughput.
const ThroughputWindow = time.Minute

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

// Totals are the headline counts. Field names are part of the API (see README).
type Totals struct {
	Results   int `json:"results"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Canceled  int `json:"canceled"`
	// GPURuns ran on a GPU; CPURuns on a CPU, fallbacks included; Fallbacks are the CPU runs of
	// jobs that preferred a GPU.
	GPURuns    int   `json:"gpu_runs"`
	CPURuns    int   `json:"cpu_runs"`
	Fallbacks  int   `json:"fallbacks"`
	Duplicates int64 `json:"duplicates"`
	Malformed  int64 `json:"malformed"`
}

// Throughput is jobs per second. Overall divides the results by the time from the earliest
// start_time to the latest end_time; LastMinute counts the results whose end_time lies in the
// minute before now.
type Throughput struct {
	Overall    float64    `json:"overall_per_sec"`
	LastMinute float64    `json:"last_minute_per_sec"`
	FirstStart *time.Time `json:"first_start,omitempty"`
	LastEnd    *time.Time `json:"last_end,omitempty"`
	Series     *Series    `json:"series,omitempty"`
}

// Series counts results per time bucket of end_time, split by where they ran.
type Series struct {
	Start         time.Time `json:"start"`
	BucketSeconds int       `json:"bucket_seconds"`
	GPU           []int     `json:"gpu"`
	CPU           []int     `json:"cpu"`
	Failed        []int     `json:"failed"`
}

// TimeStats summarise processing_time (seconds) of completed results. Percentiles interpolate
// linearly between the closest ranks (numpy's default).
type TimeStats struct {
	Avg float64 `json:"avg"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
}

// Rate is the mean headline rate (GFLOP/s, GB/s or samples/s) of completed results.
type Rate struct {
	Mean float64 `json:"mean"`
	Unit string  `json:"unit"`
}

// Group is one job_type × worker_type cell of /api/stats.
type Group struct {
	JobType        string     `json:"job_type"`
	WorkerType     string     `json:"worker_type"`
	Results        int        `json:"results"`
	Completed      int        `json:"completed"`
	Failed         int        `json:"failed"`
	Canceled       int        `json:"canceled"`
	Fallbacks      int        `json:"fallbacks"`
	ProcessingTime *TimeStats `json:"processing_time,omitempty"`
	Rate           *Rate      `json:"rate,omitempty"`
}

// Count is a count under a name.
type Count struct {
	ErrorType string `json:"error_type"`
	Count     int    `json:"count"`
}

// FallbackCount counts fallback runs of one job type for one reason.
type FallbackCount struct {
	JobType string `json:"job_type"`
	Reason  string `json:"reason"`
	Count   int    `json:"count"`
}

// Stats is the body of GET /api/stats.
type Stats struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Totals      Totals          `json:"totals"`
	Throughput  Throughput      `json:"throughput"`
	Groups      []Group         `json:"groups"`
	Failures    []Count         `json:"failures"`
	Fallbacks   []FallbackCount `json:"fallbacks"`
}

// Summary is the running summary that tail prints and the SSE stream sends.
type Summary struct {
	Totals
	ThroughputOverall    float64 `json:"throughput_overall_per_sec"`
	ThroughputLastMinute float64 `json:"throughput_last_minute_per_sec"`
}

// Stats computes the aggregates.
func (a *Aggregator) Stats() Stats {
	a.mu.RLock()
	defer a.mu.RUnlock()
	now := a.now()
	s := Stats{GeneratedAt: now.UTC(), Groups: []Group{}, Failures: []Count{}, Fallbacks: []FallbackCount{}}
	s.Totals = a.totals()
	s.Throughput = a.throughput(now, true)

	keys := make([]groupKey, 0, len(a.groups))
	for k := range a.groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].jobType != keys[j].jobType {
			return keys[i].jobType < keys[j].jobType
		}
		return keys[i].workerType < keys[j].workerType
	})
	for _, k := range keys {
		g := a.groups[k]
		out := Group{JobType: k.jobType, WorkerType: k.workerType, Results: g.results, Completed: g.completed,
			Failed: g.failed, Canceled: g.canceled, Fallbacks: g.fallbacks}
		if len(g.times) > 0 {
			out.ProcessingTime = timeStats(g.times)
		}
		if len(g.rates) > 0 {
			out.Rate = &Rate{Mean: mean(sorted(g.rates)), Unit: g.unit}
		}
		s.Groups = append(s.Groups, out)
	}

	failures := map[string]int{}
	fallbacks := map[[2]string]int{}
	for _, r := range a.results {
		if r.Status != jobs.StatusCompleted {
			failures[errorType(r)]++
		}
		if r.Fallback != "" {
			fallbacks[[2]string{r.JobType, r.Fallback}]++
		}
	}
	s.Failures = failureCounts(failures)
	for k, n := range fallbacks {
		s.Fallbacks = append(s.Fallbacks, FallbackCount{JobType: k[0], Reason: k[1], Count: n})
	}
	sort.Slice(s.Fallbacks, func(i, j int) bool {
		x, y := s.Fallbacks[i], s.Fallbacks[j]
		if x.JobType != y.JobType {
			return x.JobType < y.JobType
		}
		return x.Reason < y.Reason
	})
	return s
}

// Summary computes the running summary, which is cheaper than Stats.
func (a *Aggregator) Summary() Summary {
	a.mu.RLock()
	defer a.mu.RUnlock()
	tp := a.throughput(a.now(), false)
	return Summary{Totals: a.totals(), ThroughputOverall: tp.Overall, ThroughputLastMinute: tp.LastMinute}
}

func errorType(r jobs.Result) string {
	if r.ErrorType != "" {
		return r.ErrorType
	}
	if r.Status == jobs.StatusCanceled {
		return jobs.ErrCanceled
	}
	return "unknown"
}

func (a *Aggregator) totals() Totals {
	t := Totals{Results: len(a.results), Duplicates: a.duplicates, Malformed: a.malformed}
	for k, g := range a.groups {
		t.Completed += g.completed
		t.Failed += g.failed
		t.Canceled += g.canceled
		t.Fallbacks += g.fallbacks
		switch k.workerType {
		case jobs.WorkerTypeGPU:
			t.GPURuns += g.results - g.fallbacks
		case jobs.WorkerTypeCPU:
			t.CPURuns += g.results
		}
	}
	return t
}

// maxBuckets bounds the throughput series; bucketSizes are the bucket widths it picks from.
const maxBuckets = 60

var bucketSizes = []int{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400}

func (a *Aggregator) throughput(now time.Time, series bool) Throughput {
	var tp Throughput
	var first, last time.Time
	recent := 0
	windowStart := now.Add(-ThroughputWindow)
	for _, r := range a.results {
		end := endTime(r)
		if end.IsZero() {
			continue
		}
		start := r.StartTime
		if start.IsZero() {
			start = end
		}
		if first.IsZero() || start.Before(first) {
			first = start
		}
		if end.After(last) {
			last = end
		}
		if end.After(windowStart) && !end.After(now) {
			recent++
		}
	}
	tp.LastMinute = float64(recent) / ThroughputWindow.Seconds()
	if first.IsZero() {
		return tp
	}
	first, last = first.UTC(), last.UTC()
	tp.FirstStart, tp.LastEnd = &first, &last
	if span := last.Sub(first).Seconds(); span > 0 {
		tp.Overall = float64(len(a.results)) / span
	}
	if series {
		tp.Series = a.series(first, last)
	}
	return tp
}

// endTime is when a result was produced: end_time, else submit_time for results that never ran.
func endTime(r jobs.Result) time.Time {
	if !r.EndTime.IsZero() {
		return r.EndTime
	}
	return r.SubmitTime
}

func (a *Aggregator) series(first, last time.Time) *Series {
	span := last.Sub(first).Seconds()
	size := bucketSizes[len(bucketSizes)-1]
	for _, b := range bucketSizes {
		if span/float64(b) < maxBuckets {
			size = b
			break
		}
	}
	start := first.Truncate(time.Duration(size) * time.Second)
	n := int(last.Sub(start).Seconds()/float64(size)) + 1
	n = min(n, maxBuckets+1)
	s := &Series{Start: start, BucketSeconds: size, GPU: make([]int, n), CPU: make([]int, n), Failed: make([]int, n)}
	for _, r := range a.results {
		end := endTime(r)
		if end.IsZero() {
			continue
		}
		i := min(max(int(end.Sub(start).Seconds()/float64(size)), 0), n-1)
		switch {
		case r.Status != jobs.StatusCompleted:
			s.Failed[i]++
		case r.WorkerType == jobs.WorkerTypeGPU && r.Fallback == "":
			s.GPU[i]++
		default:
			s.CPU[i]++
		}
	}
	return s
}

func timeStats(v []float64) *TimeStats {
	s := sorted(v)
	return &TimeStats{Avg: mean(s), Min: s[0], Max: s[len(s)-1], P50: percentile(s, 0.50), P95: percentile(s, 0.95)}
}

func sorted(v []float64) []float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}

// mean of sorted values: summing in sorted order makes it independent of arrival order.
func mean(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return sum / float64(len(s))
}

// percentile of sorted values, interpolating linearly between closest ranks.
func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	pos := p * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Comparison is one job type and params that ran on both a CPU and a GPU.
type Comparison struct {
	Params  json.RawMessage `json:"params"`
	CPURuns int             `json:"cpu_runs"`
	GPURuns int             `json:"gpu_runs"`
	CPUMean float64         `json:"cpu_mean_time"`
	GPUMean float64         `json:"gpu_mean_time"`
	Speedup float64         `json:"speedup"`
}

// JobSpeedup is one job type's line of /api/speedup. Speedup is the geometric mean of the
// speedups of its compared params (the speedup itself when there is one).
type JobSpeedup struct {
	JobType  string       `json:"job_type"`
	Speedup  float64      `json:"speedup"`
	CPUMean  float64      `json:"cpu_mean_time"`
	GPUMean  float64      `json:"gpu_mean_time"`
	Compared []Comparison `json:"compared"`
	// Uncompared counts the params that ran on one kind of device only.
	Uncompared int `json:"uncompared"`
}

// Speedups is the body of GET /api/speedup.
type Speedups struct {
	GeneratedAt time.Time    `json:"generated_at"`
	JobTypes    []JobSpeedup `json:"job_types"`
}

// Speedup compares CPU and GPU runs of the same job type and params: speedup = mean CPU
// processing_time / mean GPU processing_time. Job types without a comparable pair are listed
// with speedup 0 and no comparisons.
func (a *Aggregator) Speedup() Speedups {
	a.mu.RLock()
	defer a.mu.RUnlock()
	byType := map[string]*JobSpeedup{}
	var types []string
	for k, c := range a.compare {
		js := byType[k.jobType]
		if js == nil {
			js = &JobSpeedup{JobType: k.jobType, Compared: []Comparison{}}
			byType[k.jobType] = js
			types = append(types, k.jobType)
		}
		if len(c.cpu) == 0 || len(c.gpu) == 0 {
			js.Uncompared++
			continue
		}
		cm, gm := mean(sorted(c.cpu)), mean(sorted(c.gpu))
		cmp := Comparison{Params: c.params, CPURuns: len(c.cpu), GPURuns: len(c.gpu), CPUMean: cm, GPUMean: gm}
		if gm > 0 {
			cmp.Speedup = cm / gm
		}
		js.Compared = append(js.Compared, cmp)
	}
	sort.Strings(types)
	out := Speedups{GeneratedAt: a.now().UTC(), JobTypes: []JobSpeedup{}}
	for _, t := range types {
		js := byType[t]
		sort.Slice(js.Compared, func(i, j int) bool { return string(js.Compared[i].Params) < string(js.Compared[j].Params) })
		var logSum, cpuSum, gpuSum float64
		n := 0
		for _, c := range js.Compared {
			if c.Speedup > 0 {
				logSum += math.Log(c.Speedup)
				cpuSum += c.CPUMean
				gpuSum += c.GPUMean
				n++
			}
		}
		if n > 0 {
			js.Speedup = math.Exp(logSum / float64(n))
			js.CPUMean, js.GPUMean = cpuSum/float64(n), gpuSum/float64(n)
		}
		out.JobTypes = append(out.JobTypes, *js)
	}
	return out
}

// Filter selects results for /api/results; empty fields match everything.
type Filter struct {
	JobType    string
	WorkerType string
	Status     string
	Limit      int  // 0: all
	Oldest     bool // oldest first; newest first otherwise
}

func (f Filter) match(r jobs.Result) bool {
	return (f.JobType == "" || r.JobType == f.JobType) &&
		(f.WorkerType == "" || workerType(r) == f.WorkerType) &&
		(f.Status == "" || r.Status == f.Status)
}

// Results returns the matching results and how many matched before the limit.
func (a *Aggregator) Results(f Filter) ([]jobs.Result, int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []jobs.Result{}
	matched := 0
	n := len(a.results)
	for i := range n {
		j := n - 1 - i
		if f.Oldest {
			j = i
		}
		if !f.match(a.results[j]) {
			continue
		}
		matched++
		if f.Limit == 0 || len(out) < f.Limit {
			out = append(out, a.results[j])
		}
	}
	return out, matched
}

// Since returns the results after the first seq ones, in arrival order, and the new sequence
// number (the count of results so far): the SSE stream's cursor.
func (a *Aggregator) Since(seq int) ([]jobs.Result, int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	seq = min(max(seq, 0), len(a.results))
	return slices.Clone(a.results[seq:]), len(a.results)
}

// failureCounts lists failures by error type, the most frequent first (ties by name).
func failureCounts(byType map[string]int) []Count {
	out := make([]Count, 0, len(byType))
	for t, n := range byType {
		out = append(out, Count{ErrorType: t, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].ErrorType < out[j].ErrorType
	})
	return out
}
