package validate

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gpujobs/gpujobs/internal/compose"
)

// The cluster test (internal/cluster, make test-cluster) runs docker-compose.yml's services with
// what internal/compose reads from the file. This holds that reading to compose-go's, the loader
// of `docker compose` itself, for every service and profile: the environment (env_file,
// anchors, variables), command, entrypoint, user, host name, volumes, start order and health
// checks. So the file is the one source of the services' settings for both.
func TestClusterReadsComposeAsComposeDoes(t *testing.T) {
	// With .env.example, and with only the passwords set, so that every default applies.
	t.Run("env.example", func(t *testing.T) { compareCompose(t, exampleEnv(t)) })
	t.Run("defaults", func(t *testing.T) {
		env := maps.Clone(testSecrets)
		env["RABBITMQ_USER"] = "gpujobs" // required, like the passwords
		compareCompose(t, env)
	})
}

func compareCompose(t *testing.T, env map[string]string) {
	want, err := loadCompose(t, env, "gpu", "tools")
	if err != nil {
		t.Fatal(err)
	}
	got, err := compose.Load(filepath.Join(repoRoot(t), composeFile), env)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := slices.Sorted(maps.Keys(got.Services)), slices.Sorted(slices.Values(want.ServiceNames())); !slices.Equal(g, w) {
		t.Fatalf("services: internal/compose reads %v, compose-go %v", g, w)
	}
	for name, s := range want.Services {
		c := got.Services[name]
		wantEnv := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				wantEnv[k] = *v
			}
		}
		if !maps.Equal(c.Environment, wantEnv) {
			t.Errorf("%s environment differs:\n%s", name, diffEnv(c.Environment, wantEnv))
		}
		for _, f := range []struct {
			what      string
			got, want []string
		}{
			{"command", c.Command, s.Command},
			{"entrypoint", c.Entrypoint, s.Entrypoint},
			{"health check", c.HealthCheck, healthTest(s)},
			{"volumes", volumes(c.Volumes), composeVolumes(s.Volumes)},
			{"profiles", c.Profiles, s.Profiles},
		} {
			if !slices.Equal(f.got, f.want) {
				t.Errorf("%s %s: internal/compose %q, compose-go %q", name, f.what, f.got, f.want)
			}
		}
		if c.User != s.User || c.Hostname != s.Hostname || c.Image != s.Image {
			t.Errorf("%s user/hostname/image: %q %q %q, compose-go %q %q %q", name, c.User, c.Hostname, c.Image, s.User, s.Hostname, s.Image)
		}
		wantDeps := map[string]string{}
		for d, dep := range s.DependsOn {
			wantDeps[d] = dep.Condition
		}
		if !maps.Equal(c.DependsOn, wantDeps) {
			t.Errorf("%s depends_on %v, compose-go %v", name, c.DependsOn, wantDeps)
		}
		if s.Build != nil && filepath.Base(c.Dockerfile) != filepath.Base(s.Build.Dockerfile) {
			t.Errorf("%s dockerfile %q, compose-go %q", name, c.Dockerfile, s.Build.Dockerfile)
		}
	}
	// A required variable that is missing stops both.
	delete(env, "POSTGRES_PASSWORD")
	if _, err := compose.Load(filepath.Join(repoRoot(t), composeFile), env); err == nil || !strings.Contains(err.Error(), "POSTGRES_PASSWORD") {
		t.Errorf("without POSTGRES_PASSWORD internal/compose says %v, want an error naming it", err)
	}
}

func healthTest(s types.ServiceConfig) []string {
	if s.HealthCheck == nil {
		return nil
	}
	return s.HealthCheck.Test
}

func volumes(vs []compose.Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s:%s:named=%v:ro=%v", v.Source, v.Target, v.Named, v.ReadOnly))
	}
	return out
}

func composeVolumes(vs []types.ServiceVolumeConfig) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s:%s:named=%v:ro=%v", v.Source, v.Target, v.Type == types.VolumeTypeVolume, v.ReadOnly))
	}
	return out
}

func diffEnv(got, want map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			fmt.Fprintf(&b, "  %s: internal/compose %q (set %v), compose-go %q\n", k, g, ok, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "  %s: internal/compose %q, compose-go does not set it\n", k, got[k])
		}
	}
	return b.String()
}
