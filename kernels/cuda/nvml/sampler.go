package nvml

import (
	"sync"
	"time"
)

// Sample is one reading of a device.
type Sample struct {
	Utilization float64 // percent of time a kernel was running
	MemoryUsed  int64   // bytes in use on the device, by every process
}

// Source reads a device; *Device is one.
type Source interface {
	Sample() (Sample, error)
}

// Stats summarise the samples taken while a job ran. They are device-wide: when jobs share a
// GPU, each one's figures include the others'.
type Stats struct {
	Samples         int
	UtilizationMean float64
	UtilizationPeak float64
	MemoryPeak      int64
}

// DefaultInterval is how often a Recorder samples: NVML's own utilisation figure covers the last
// 1/6 s to 1 s, so sampling faster only repeats it.
const DefaultInterval = 100 * time.Millisecond

// Recorder samples a device from Record to Stop, on a goroutine that Stop ends.
type Recorder struct {
	src  Source
	done chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	stats Stats
	sum   float64
}

// Record takes a first sample now and then one every interval (DefaultInterval when <= 0).
func Record(src Source, interval time.Duration) *Recorder {
	if interval <= 0 {
		interval = DefaultInterval
	}
	r := &Recorder{src: src, done: make(chan struct{})}
	r.take()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-r.done:
				return
			case <-t.C:
				r.take()
			}
		}
	}()
	return r
}

// take adds one sample; a failed read is skipped (the figures then come from the others).
func (r *Recorder) take() {
	s, err := r.src.Sample()
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Samples++
	r.sum += s.Utilization
	r.stats.UtilizationPeak = max(r.stats.UtilizationPeak, s.Utilization)
	r.stats.MemoryPeak = max(r.stats.MemoryPeak, s.MemoryUsed)
	r.stats.UtilizationMean = r.sum / float64(r.stats.Samples)
}

// Stop takes a last sample, so that even a job shorter than the interval has two, ends the
// sampling and returns the statistics; ok is false when no sample could be read.
func (r *Recorder) Stop() (s Stats, ok bool) {
	close(r.done)
	r.wg.Wait()
	r.take()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats, r.stats.Samples > 0
}
