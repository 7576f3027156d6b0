package compose

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These run on every `go test`: the cluster test reads docker-compose.yml through this package,
// so a change to the file reaches it, not a copy. deployments/validate compares what it reads
// with compose-go.

func TestInterpolate(t *testing.T) {
	vars := map[string]string{"A": "a", "EMPTY": ""}
	for _, c := range []struct{ in, want, err string }{
		{"x${A}y", "xay", ""},
		{"$A-$$A", "a-$A", ""},
		{"${EMPTY:-d}", "d", ""},
		{"${EMPTY-d}", "", ""},
		{"${UNSET-d}", "d", ""},
		{"${UNSET:-d}", "d", ""},
		{"${A:?need A}", "a", ""},
		{"${EMPTY:?set EMPTY in .env (see .env.example)}", "", "EMPTY"},
		{"${EMPTY?x}", "", ""},
		{"${UNSET?x}", "", "UNSET"},
		{`pg_isready -U "$${POSTGRES_USER}"`, `pg_isready -U "${POSTGRES_USER}"`, ""},
	} {
		got, err := Interpolate(c.in, vars)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want one naming %s", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	root := repoRoot(t)
	vars, err := ReadEnvFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars["RABBITMQ_PASS"], vars["POSTGRES_PASSWORD"], vars["MONITOR_TOKEN"] = "rabbit-secret", "pg-secret", "monitor-token-secret"
	vars["S3_ACCESS_KEY"], vars["S3_SECRET_KEY"] = "s3-key", "s3-secret"
	c, err := Load(filepath.Join(root, "docker-compose.yml"), vars)
	if err != nil {
		t.Fatal(err)
	}
	sched := c.Services["scheduler"]
	// Merged from the x-temporal-client and x-rabbitmq-client anchors, and the service's own.
	for k, want := range map[string]string{
		"TEMPORAL_ADDRESS": "temporal:7233", "RABBITMQ_HOST": "rabbitmq", "RABBITMQ_PORT": "5672",
		"RABBITMQ_USER": "gpujobs", "RABBITMQ_PASS": "rabbit-secret", "WORKER_TYPE": "scheduler",
		"LOG_FORMAT": "json",
	} {
		if got := sched.Environment[k]; got != want {
			t.Errorf("scheduler %s = %q, want %q", k, got, want)
		}
	}
	if sched.Dockerfile != "deployments/docker/worker.Dockerfile" { // build: *worker-build
		t.Errorf("scheduler dockerfile %q", sched.Dockerfile)
	}
	if got := sched.DependsOn["rabbitmq"]; got != "service_healthy" {
		t.Errorf("scheduler depends_on rabbitmq: %q", got)
	}
	if pg := c.Services["postgresql"]; len(pg.HealthCheck) != 2 || pg.HealthCheck[0] != "CMD-SHELL" || !strings.Contains(pg.HealthCheck[1], "${POSTGRES_USER}") {
		t.Errorf("postgresql health check %q", pg.HealthCheck)
	}
	var dyn *Volume
	for i, v := range c.Services["temporal"].Volumes {
		if strings.HasSuffix(v.Target, "gpujobs.yaml") {
			dyn = &c.Services["temporal"].Volumes[i]
		}
	}
	if dyn == nil || dyn.Named || !dyn.ReadOnly || dyn.Source != filepath.Join(root, "deployments/temporal/dynamicconfig.yaml") {
		t.Errorf("temporal's dynamic config volume: %+v", dyn)
	}
	if m := c.Services["monitor"]; m.User != "1000:1000" || len(m.Command) != 1 || m.Command[0] != "serve" {
		t.Errorf("monitor user %q command %q", m.User, m.Command)
	}

	delete(vars, "RABBITMQ_PASS")
	if _, err := Load(filepath.Join(root, "docker-compose.yml"), vars); err == nil || !strings.Contains(err.Error(), "RABBITMQ_PASS") {
		t.Errorf("without RABBITMQ_PASS: %v, want an error naming it", err)
	}
}

func TestReadDockerfile(t *testing.T) {
	img, err := ReadDockerfile(filepath.Join(repoRoot(t), "deployments/docker/monitor.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if img.Env["RESULTS_FILE"] != "/results/results.jsonl" || img.Env["LOG_FORMAT"] != "json" || img.User != "10001:10001" {
		t.Errorf("monitor image: %+v", img)
	}
	if strings.Join(img.Entrypoint, " ") != "/usr/local/bin/monitor" || strings.Join(img.Cmd, " ") != "serve" {
		t.Errorf("monitor entrypoint %q cmd %q", img.Entrypoint, img.Cmd)
	}
	if len(img.HealthCheck) < 2 || img.HealthCheck[0] != "CMD" || img.HealthCheck[1] != "curl" {
		t.Errorf("monitor health check %q", img.HealthCheck)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(dir, "..", ".."))
}
