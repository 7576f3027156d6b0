package activities

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
)

// Results published at once by concurrent activities are saved in a few serialised writes, and
// the file always holds the whole model.
func TestLearnerSavesSeriallyAndRarely(t *testing.T) {
	path := filepath.Join(t.TempDir(), "estimates.json")
	l := &Learner{Kinds: builtin.Kinds(), Model: estimate.NewModel(), Path: path, Logger: zap.NewNop(), SaveEvery: 50 * time.Millisecond}
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Learn(jobs.Result{JobType: "vector_addition", Status: jobs.StatusCompleted, WorkerType: "cpu",
				Params: []byte(`{"size": 1000, "iterations": 1}`), ProcessingTime: 0.001 + float64(i)*1e-6})
		}()
	}
	wg.Wait()
	l.Close()
	if n := l.saves.Load(); n < 1 || n > 10 {
		t.Errorf("%d saves for 200 results within well under a second, want a few", n)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var obs []estimate.Observation
	if err := json.Unmarshal(b, &obs); err != nil || len(obs) != 64 {
		t.Errorf("saved file: %d observations, %v; want the model's window of 64", len(obs), err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
