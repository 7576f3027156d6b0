// Package layering checks the dependency rules of the repository's layout with the go tool, so a
// change that makes a client link the kernels, or the leaf vocabulary link Temporal, fails CI.
package layering

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// root is the module's directory.
func root(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// deps lists every package pkg links (go list -deps), with the build's default tags.
func deps(t *testing.T, pkg string, env ...string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", pkg)
	cmd.Dir = root(t)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestPackagesLinkOnlyWhatTheyNeed(t *testing.T) {
	for _, tt := range []struct {
		pkg       string
		forbidden []string
	}{
		// The monitor reads results through the shared vocabulary only.
		{"./monitor", []string{"go.temporal.io", "gonum.org", "github.com/gpujobs/gpujobs/kernels", "github.com/gpujobs/gpujobs/workflows"}},
		// A client links no numeric code.
		{"./starter", []string{"gonum.org", "github.com/gpujobs/gpujobs/kernels", "github.com/gpujobs/gpujobs/activities"}},
		// The artifact store serves clients and workers alike: no Temporal, broker or numeric code.
		{"./internal/artifacts", []string{"go.temporal.io", "gonum.org", "github.com/rabbitmq", "github.com/gpujobs/gpujobs/kernels"}},
		// The leaf vocabulary and the built-in kinds' params: the standard library only.
		{"./jobs", []string{"go.temporal.io", "gonum.org", "github.com/rabbitmq", "go.uber.org", "github.com/gpujobs/gpujobs/"}},
		{"./jobs/builtin", []string{"go.temporal.io", "gonum.org", "github.com/rabbitmq", "github.com/gpujobs/gpujobs/kernels"}},
		// The scheduling policy is plain Go.
		{"./scheduling/...", []string{"go.temporal.io", "gonum.org", "github.com/rabbitmq"}},
		// Kernels are pure computation.
		{"./kernels", []string{"go.temporal.io", "github.com/rabbitmq", "net/http"}},
	} {
		for _, d := range deps(t, tt.pkg) {
			if d == "github.com/gpujobs/gpujobs/jobs" && tt.pkg == "./jobs" {
				continue // itself
			}
			for _, f := range tt.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s links %s", tt.pkg, d)
				}
			}
		}
	}
}

// The client and the monitor build without cgo, as their images build them.
func TestClientsBuildWithoutCgo(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", t.TempDir(), "./starter", "./monitor", "./monitor/report")
	cmd.Dir = root(t)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./starter ./monitor ./monitor/report: %v\n%s", err, out)
	}
}
