package nvml

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// On a machine without NVML, or with NVML but no driver (this CI box has the library from the
// CUDA packages and no GPU), Load says what is missing and nothing crashes.
func TestLoadAbsent(t *testing.T) {
	if _, err := Load("/nonexistent/libnvidia-ml.so.1"); err == nil || !strings.Contains(err.Error(), "NVML not loaded") {
		t.Errorf("Load(missing file) = %v, want an error saying NVML is not loaded", err)
	}
	if _, err := Load("libc.so.6"); err == nil || !strings.Contains(err.Error(), "missing nvmlInit_v2") {
		t.Errorf("Load(libc) = %v, want an error naming the missing entry points", err)
	}
	l, err := Load("")
	if err != nil {
		if !strings.Contains(err.Error(), "NVML not") {
			t.Errorf("Load() error %q does not say what is missing", err)
		}
		t.Logf("no NVML here, as expected without a GPU: %v", err)
		return
	}
	defer l.Close()
	v, err := l.DriverVersion()
	t.Logf("NVML loaded: driver %s (%v)", v, err)
}

// fake is a scripted device: it returns the samples in turn (repeating the last), failing where
// the script has an error, and counts the reads.
type fake struct {
	mu     sync.Mutex
	script []any // Sample or error
	reads  int
}

func (f *fake) Sample() (Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.script[min(f.reads, len(f.script)-1)]
	f.reads++
	if err, ok := v.(error); ok {
		return Sample{}, err
	}
	return v.(Sample), nil
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func TestRecorderStats(t *testing.T) {
	f := &fake{script: []any{
		Sample{Utilization: 10, MemoryUsed: 1 << 30},
		errors.New("NVML_ERROR_TIMEOUT"), // skipped
		Sample{Utilization: 90, MemoryUsed: 3 << 30},
		Sample{Utilization: 50, MemoryUsed: 2 << 30},
	}}
	r := Record(f, time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for f.count() < 3 { // the first, the failed one and the 90 % one
		if time.Now().After(deadline) {
			t.Fatal("the recorder did not sample")
		}
		time.Sleep(time.Millisecond)
	}
	s, ok := r.Stop()
	if !ok {
		t.Fatal("no stats")
	}
	// Samples: 10, 90, then 50 repeated until Stop: the mean lies between 50 and (10+90+50)/3.
	n := float64(s.Samples)
	want := (10 + 90 + 50*(n-2)) / n
	if s.Samples < 3 || s.UtilizationPeak != 90 || s.MemoryPeak != 3<<30 || s.UtilizationMean != want {
		t.Errorf("stats %+v, want ≥3 samples, peak 90 %%, 3 GiB, mean %.3f", s, want)
	}
	if reads := f.count(); reads != s.Samples+1 {
		t.Errorf("%d reads for %d samples and one failure: sampling went on after Stop?", reads, s.Samples)
	}
}

// A job shorter than the interval still gets a sample at its start and one at its end.
func TestRecorderShortJob(t *testing.T) {
	f := &fake{script: []any{Sample{Utilization: 0, MemoryUsed: 100}, Sample{Utilization: 60, MemoryUsed: 200}}}
	s, ok := Record(f, time.Hour).Stop()
	if !ok || s.Samples != 2 || s.UtilizationMean != 30 || s.UtilizationPeak != 60 || s.MemoryPeak != 200 {
		t.Errorf("stats %+v ok=%v, want 2 samples, mean 30, peak 60, 200 bytes", s, ok)
	}
}

// When every read fails, there are no figures rather than zeros.
func TestRecorderAllFailed(t *testing.T) {
	f := &fake{script: []any{errors.New("NVML_ERROR_GPU_IS_LOST")}}
	if s, ok := Record(f, time.Hour).Stop(); ok {
		t.Errorf("stats %+v reported from failed reads", s)
	}
}
