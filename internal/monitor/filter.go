package monitor

import "github.com/gpujobs/gpujobs/jobs"

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
