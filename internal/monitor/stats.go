package monitor

import (
	"math"
	"slices"
	"sort"

	"github.com/gpujobs/gpujobs/jobs"
)

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
		out.GPUTelemetry = g.gpu.stats()
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
	t := Totals{Results: len(a.results), Duplicates: a.counters.Duplicates, Malformed: a.counters.Malformed,
		Rejected: a.counters.Rejected, RejectedAtLoad: a.rejectedAtLoad}
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
