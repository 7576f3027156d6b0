package kernels_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
)

// dirCheckpoints is a checkpointer over a local directory that an attempt's Save leaves in place
// for the next attempt, as the worker's does through the artifact store.
type dirCheckpoints struct {
	dir   string
	saves int
}

func (c *dirCheckpoints) Dir() string { return c.dir }
func (c *dirCheckpoints) Restored() (bool, string) {
	_, err := os.Stat(filepath.Join(c.dir, "neural_network.gob"))
	return err == nil, "an earlier attempt"
}
func (c *dirCheckpoints) Save(context.Context) error { c.saves++; return nil }

// A training stopped after epoch 2 resumes there and ends exactly as an uninterrupted one.
func TestNeuralNetworkResumesFromItsCheckpoint(t *testing.T) {
	p := &builtin.NeuralNetwork{Epochs: 4, BatchSize: 32, InputSize: 20, HiddenSize: 16, OutputSize: 4, Samples: 256, LearningRate: 1e-2, Seed: 7}
	whole, err := kernels.NeuralNetwork(context.Background(), p, func(jobs.Progress) {})
	if err != nil {
		t.Fatal(err)
	}
	cp := &dirCheckpoints{dir: t.TempDir()}
	ctx, cancel := context.WithCancel(jobs.WithRunInfo(context.Background(), jobs.RunInfo{JobID: "job-nn", Attempt: 1, Checkpoints: cp}))
	_, err = kernels.NeuralNetwork(ctx, p, func(pr jobs.Progress) {
		if pr.Iteration == 2 {
			cancel() // the worker goes away after epoch 2
		}
	})
	if !errors.Is(err, context.Canceled) || cp.saves != 2 {
		t.Fatalf("first attempt: %v after %d saves", err, cp.saves)
	}
	var epochs []int
	again, err := kernels.NeuralNetwork(jobs.WithRunInfo(context.Background(), jobs.RunInfo{JobID: "job-nn", Attempt: 2, Checkpoints: cp}), p,
		func(pr jobs.Progress) { epochs = append(epochs, pr.Iteration) })
	if err != nil {
		t.Fatal(err)
	}
	if again.ResumedFrom != "epoch 2 of 4 (its checkpoint)" || len(epochs) != 2 || epochs[0] != 3 {
		t.Errorf("resumed %q, ran epochs %v: want 3 and 4 after epoch 2", again.ResumedFrom, epochs)
	}
	for _, m := range []string{"final_loss", "initial_loss", "accuracy"} {
		if again.Metrics[m] != whole.Metrics[m] {
			t.Errorf("%s: %v resumed, %v uninterrupted", m, again.Metrics[m], whole.Metrics[m])
		}
	}
	// A checkpoint of other params is not this job's: it starts over.
	q := *p
	q.Seed = 8
	other, err := kernels.NeuralNetwork(jobs.WithRunInfo(context.Background(), jobs.RunInfo{Checkpoints: cp}), &q, func(jobs.Progress) {})
	if err != nil || other.ResumedFrom != "" {
		t.Errorf("other params: resumed %q, %v", other.ResumedFrom, err)
	}
}
