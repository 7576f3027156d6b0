package validate

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// temporalServices is how many services keep their own persistence pools: frontend, history,
// matching and worker (one process in docker-compose.yml, one pod each in the Helm chart).
const temporalServices = 4

// connectionMargin is for what else connects: the schema and setup one-shots, psql, probes.
const connectionMargin = 20

var maxConnectionsArg = regexp.MustCompile(`^max_connections=(\d+)$`)

// maxConnections reads -c max_connections=N from postgres arguments (100, PostgreSQL's default,
// without it).
func maxConnections(args []string) int {
	for i, a := range args {
		if i > 0 && args[i-1] == "-c" {
			if m := maxConnectionsArg.FindStringSubmatch(a); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n
			}
		}
	}
	return 100
}

// PostgreSQL must accept every connection Temporal's pools may open. The cluster test found the
// default 100 short of them: one compose server holds 58 after a burst of 200 jobs, and its
// four services may open 4 × (20 + 10) = 120.
func TestPostgresAcceptsTemporalsPools(t *testing.T) {
	p := mustLoadCompose(t)
	env := p.Services["temporal"].Environment
	pool := func(key string, def int) int {
		if v := deref(env[key]); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("temporal %s=%q", key, v)
			}
			return n
		}
		return def // the server's config template's default
	}
	need := temporalServices*(pool("SQL_MAX_CONNS", 20)+pool("SQL_VIS_MAX_CONNS", 10)) + connectionMargin
	if got := maxConnections(p.Services["postgresql"].Command); got < need {
		t.Errorf("docker-compose.yml: postgresql max_connections %d, want at least %d (Temporal's pools and a margin)", got, need)
	}

	// The dev overlay's PostgreSQL and the Helm chart's server (values.yaml, then values-dev.yaml).
	var values, dev struct {
		Server struct {
			ReplicaCount int `json:"replicaCount"`
			Config       struct {
				Persistence struct {
					Datastores map[string]struct {
						SQL struct {
							MaxConns int `json:"maxConns"`
						} `json:"sql"`
					} `json:"datastores"`
				} `json:"persistence"`
			} `json:"config"`
		} `json:"server"`
	}
	if err := yaml.Unmarshal(readFile(t, "deployments/k8s/temporal/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(readFile(t, "deployments/k8s/temporal/values-dev.yaml"), &dev); err != nil {
		t.Fatal(err)
	}
	replicas := values.Server.ReplicaCount
	if dev.Server.ReplicaCount != 0 {
		replicas = dev.Server.ReplicaCount
	}
	perPod := 0
	for _, ds := range values.Server.Config.Persistence.Datastores {
		perPod += ds.SQL.MaxConns
	}
	need = temporalServices*replicas*perPod + connectionMargin
	sts := render(t, "dev").statefulSets["postgresql"]
	if sts == nil {
		t.Fatal("the dev overlay has no postgresql StatefulSet")
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if got := maxConnections(append([]string{"postgres"}, append(c.Command, c.Args...)...)); got < need {
		t.Errorf("dev overlay: postgresql max_connections %d, want at least %d (%d services × %d replicas × %d per pod, and a margin)",
			got, need, temporalServices, replicas, perPod)
	}
}

var moduleVersion = regexp.MustCompile(`(?m)^\s*(\S+) v(\S+)`)

// The Temporal images of docker-compose.yml are the versions the cluster test runs: the server
// and the admin tools (schema) of the go.temporal.io/server version bin/devserver is built from,
// and the UI of its ui-server version.
func TestComposeTemporalIsTheTestedVersion(t *testing.T) {
	mods := map[string]string{}
	for _, m := range moduleVersion.FindAllStringSubmatch(string(readFile(t, "devserver/go.mod")), -1) {
		mods[m[1]] = m[2]
	}
	want := map[string]string{
		"temporalio/server":      mods["go.temporal.io/server"],
		"temporalio/admin-tools": mods["go.temporal.io/server"],
		"temporalio/ui":          mods["github.com/temporalio/ui-server/v2"],
	}
	p := mustLoadCompose(t)
	seen := 0
	for name, s := range p.Services {
		image, tag, _ := strings.Cut(s.Image, ":")
		v, ok := want[image]
		if !ok {
			continue
		}
		seen++
		if v == "" || tag != v {
			t.Errorf("%s runs %s, the cluster test runs %s %s (devserver/go.mod)", name, s.Image, image, v)
		}
	}
	if seen != 4 {
		t.Errorf("found %d Temporal services in docker-compose.yml, want 4 (schema, server, setup, UI)", seen)
	}
}
