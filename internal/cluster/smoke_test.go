package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestClusterComesUp: the compose services on their hosts, in compose's order; a job submitted
// with the starter on the ctl host runs on a CPU worker host and reaches the monitor host through
// RabbitMQ; the Web UI lists the namespace from the PostgreSQL-backed server.
func TestClusterComesUp(t *testing.T) {
	enabled(t)
	tc := newTestCluster(t, 2)
	starter := tc.Compose.Services["starter"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := tc.Net.Host("ctl").Run(ctx, Command{
		Name: "starter", Argv: []string{tc.Work + "/bin/starter", "submit", "matrix_multiply", "--size", "64", "--iterations", "2", "--wait"},
		Env: starter.Environment, Log: tc.LogPath("starter"),
	})
	if err != nil || !strings.Contains(out, "completed") {
		t.Fatalf("starter submit --wait: %v\n%s", err, out)
	}
	waitFor(t, "the monitor to count the job", time.Minute, func() bool {
		s, err := tc.monitorStats()
		return err == nil && s.Results == 1
	})
	var ns struct {
		Namespaces []struct {
			NamespaceInfo struct {
				Name string `json:"name"`
			} `json:"namespaceInfo"`
		} `json:"namespaces"`
	}
	if err := tc.getJSON("http://temporal-ui:8080/api/v1/namespaces", &ns); err != nil {
		t.Fatalf("Web UI: %v", err)
	}
	found := false
	for _, n := range ns.Namespaces {
		found = found || n.NamespaceInfo.Name == "default"
	}
	if !found {
		t.Errorf("Web UI lists %+v, want the default namespace", ns)
	}
}
