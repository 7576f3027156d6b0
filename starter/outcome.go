package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/jobs"
)

// Exit codes. One rule for every command: 0 when each job it reports on ended as the command
// asks (completed; for cancel --wait, stopped), else the code of the worst outcome.
const (
	exitError    = 1 // the command could not do its work: bad arguments, no such job, Temporal unreachable
	exitFailed   = 2 // a job failed (or timed out, or was terminated)
	exitCanceled = 3 // a job was canceled (and none failed)
	exitRunning  = 4 // --timeout passed while a job was still running
)

// verdictWait is how long submit waits for the scheduler to accept or reject a job of a kind the
// starter does not know.
const verdictWait = 15 * time.Second

// outcome returns nil when every result's status is one of ok, else an error carrying the exit
// code of the worst outcome.
func outcome(results []jobs.Result, ok ...string) error {
	var failed, canceled int
	for _, r := range results {
		switch {
		case slices.Contains(ok, r.Status):
		case r.Status == jobs.StatusCanceled:
			canceled++
		default:
			failed++
		}
	}
	switch {
	case failed > 0:
		return &cli.ExitError{Code: exitFailed, Err: fmt.Errorf("%d of %d jobs failed%s", failed, len(results), andCanceled(canceled))}
	case canceled > 0:
		return &cli.ExitError{Code: exitCanceled, Err: fmt.Errorf("%d of %d jobs were canceled", canceled, len(results))}
	}
	return nil
}

func andCanceled(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d canceled", n)
}

// stillRunning is result's error when --timeout passed: which jobs had not ended.
func stillRunning(ids []string, results []jobs.Result, timeout time.Duration) error {
	var running []string
	for i, id := range ids {
		if i >= len(results) || results[i].Status == "" {
			running = append(running, id)
		}
	}
	return &cli.ExitError{Code: exitRunning, Err: fmt.Errorf("%s still running after %s (starter status shows where it is)",
		strings.Join(running, ", "), timeout)}
}

// keyValues adds --param key=value settings to set; a value that is JSON is read as JSON.
func keyValues(kv []string, set map[string]any) error {
	for _, s := range kv {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("invalid --param %q: want key=value", s)
		}
		set[k] = jsonOrString(v)
	}
	return nil
}

func jsonOrString(v string) any {
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	return v
}
