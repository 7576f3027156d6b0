package validate

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"
)

// repoRoot is the gpujobs repository root: this module lives in deployments/validate.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// secretName says whether an environment variable holds a credential.
var secretName = regexp.MustCompile(`(?i)(PASS|PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)`)

// stopGrace is the least time a container manager must wait after SIGTERM before it kills a
// worker whose WORKER_STOP_TIMEOUT is stop: the stop timeout for the running job, then time to
// hand it back to Temporal (one heartbeat timeout, 10s, plus a margin).
func stopGrace(stop time.Duration) time.Duration { return stop + 15*time.Second }

func parseDuration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %q is not a duration: %v", what, s, err)
	}
	return d
}
