package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/temporalx"
	"github.com/gpujobs/gpujobs/workflows"
)

// Real histories of JobWorkflow (recorded by internal/e2e's TestRecordHistories against a dev
// server) replay against today's code: a change that would make the workflow non-deterministic
// for jobs already running fails here, before it reaches a cluster.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 5 {
		t.Fatalf("recorded histories: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.JobWorkflow, workflow.RegisterOptions{Name: workflows.JobWorkflowName})
			logger := temporalx.Logger(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
			if err := r.ReplayWorkflowHistoryFromJSONFile(logger, f); err != nil {
				t.Errorf("%s no longer replays: %v", f, err)
			}
		})
	}
}
