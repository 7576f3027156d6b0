package monitor

import (
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// ThroughputWindow is the window of the "last minute" throughput.
const ThroughputWindow = time.Minute

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
