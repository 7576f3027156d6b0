package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/server/temporal"
)

// bindEnv does what the temporalio/server image's entrypoint.sh does with BIND_ON_IP.
func TestBindEnv(t *testing.T) {
	lookup := func(string) ([]string, error) { return []string{"fe80::1", "198.18.0.12"}, nil }
	for _, c := range []struct {
		name            string
		env             map[string]string
		bind, broadcast string
	}{
		{"unset: this host's address", map[string]string{}, "198.18.0.12", ""},
		{"wildcard: broadcast this host's address", map[string]string{"BIND_ON_IP": "0.0.0.0"}, "0.0.0.0", "198.18.0.12"},
		{"wildcard, broadcast given", map[string]string{"BIND_ON_IP": "0.0.0.0", "TEMPORAL_BROADCAST_ADDRESS": "10.0.0.1"}, "0.0.0.0", "10.0.0.1"},
		{"an address: as it is", map[string]string{"BIND_ON_IP": "127.0.0.1"}, "127.0.0.1", ""},
	} {
		env := c.env
		err := bindEnv(func(k string) string { return env[k] }, func(k, v string) error { env[k] = v; return nil }, lookup)
		if err != nil || env["BIND_ON_IP"] != c.bind || env["TEMPORAL_BROADCAST_ADDRESS"] != c.broadcast {
			t.Errorf("%s: %v, BIND_ON_IP %q TEMPORAL_BROADCAST_ADDRESS %q; want %q %q", c.name, err, env["BIND_ON_IP"], env["TEMPORAL_BROADCAST_ADDRESS"], c.bind, c.broadcast)
		}
	}
	noName := func(string) ([]string, error) { return nil, errors.New("no such host") }
	err := bindEnv(func(string) string { return "" }, func(string, string) error { return nil }, noName)
	if err == nil || !strings.Contains(err.Error(), "BIND_ON_IP") {
		t.Errorf("unresolvable host name: %v, want an error that says to set BIND_ON_IP", err)
	}
}

func TestParseServerStart(t *testing.T) {
	t.Setenv("TEMPORAL_SERVICES", "")
	a, err := parseServerStart(nil, io.Discard)
	if err != nil || a.ConfigFile != "" || !slices.Equal(a.Services, temporal.DefaultServices) {
		t.Errorf("defaults: %+v %v", a, err)
	}
	a, err = parseServerStart([]string{"--service", "frontend", "--service", "history", "--config-file", "x.yaml", "--allow-no-auth"}, io.Discard)
	if err != nil || a.ConfigFile != "x.yaml" || !slices.Equal(a.Services, []string{"frontend", "history"}) {
		t.Errorf("flags: %+v %v", a, err)
	}
	t.Setenv("TEMPORAL_SERVICES", "matching,worker")
	if a, _ := parseServerStart(nil, io.Discard); !slices.Equal(a.Services, []string{"matching", "worker"}) {
		t.Errorf("TEMPORAL_SERVICES: %v", a.Services)
	}
	if _, err := parseServerStart([]string{"extra"}, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("an argument: %v, want a usage error", err)
	}
	if productionMode([]string{"server", "start-dev"}) != nil || productionMode([]string{"server", "start"}) == nil || productionMode([]string{"ui", "start"}) == nil {
		t.Error("productionMode must take server start and ui start, and leave start-dev to the dev server")
	}
}

// The embedded UI template is the ui-server module's own, unchanged.
func TestUIDockerConfigIsUpstreams(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/temporalio/ui-server/v2").Output()
	if err != nil {
		t.Skipf("module directory unknown: %v", err)
	}
	want, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config", "docker.yaml"))
	if err != nil {
		t.Skipf("module source not downloaded: %v", err)
	}
	if string(want) != string(uiDockerConfig) {
		t.Error("ui-docker.yaml differs from the ui-server module's config/docker.yaml: copy it again")
	}
}
