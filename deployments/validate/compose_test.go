package validate

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

const composeFile = "docker-compose.yml"

// testSecrets stand in for the passwords that .env.example leaves empty.
var testSecrets = map[string]string{
	"RABBITMQ_PASS":     "compose-test-rabbitmq-secret",
	"POSTGRES_PASSWORD": "compose-test-postgres-secret",
	"S3_ACCESS_KEY":     "compose-test-s3-key",
	"S3_SECRET_KEY":     "compose-test-s3-secret",
	"MONITOR_TOKEN":     "compose-test-monitor-token",
}

// exampleEnv is .env.example with the test passwords filled in.
func exampleEnv(t *testing.T) map[string]string {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(repoRoot(t), ".env.example"))
	if err != nil {
		t.Fatalf("read .env.example: %v", err)
	}
	for k, v := range testSecrets {
		env[k] = v
	}
	return env
}

// loadCompose loads docker-compose.yml as `docker compose` would, with env as the environment
// (not the process's, nor a .env file that may exist on this machine) and profiles active.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) (*types.Project, error) {
	t.Helper()
	var list []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, composeFile)},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(list),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func mustLoadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, exampleEnv(t), profiles...)
	if err != nil {
		t.Fatalf("load %s with profiles %v: %v", composeFile, profiles, err)
	}
	return p
}

// The seed's topology on real engines, the GPU worker behind its profile.
func TestComposeServicesAndProfiles(t *testing.T) {
	always := []string{"cpu-worker", "monitor", "postgresql", "rabbitmq", "scheduler", "seaweedfs",
		"temporal", "temporal-schema", "temporal-setup", "temporal-ui"}

	p := mustLoadCompose(t)
	if got := slices.Sorted(slices.Values(p.ServiceNames())); !slices.Equal(got, always) {
		t.Errorf("services without profiles = %v, want %v", got, always)
	}
	if !slices.Contains(p.DisabledServiceNames(), "gpu-worker") {
		t.Errorf("gpu-worker must be off without the gpu profile (disabled: %v)", p.DisabledServiceNames())
	}

	gpu := mustLoadCompose(t, "gpu")
	if !slices.Contains(gpu.ServiceNames(), "gpu-worker") {
		t.Fatalf("--profile gpu does not start gpu-worker: %v", gpu.ServiceNames())
	}
	if s := gpu.Services["gpu-worker"]; !slices.Equal(s.Profiles, []string{"gpu"}) {
		t.Errorf("gpu-worker profiles = %v, want [gpu]", s.Profiles)
	}
	tools := mustLoadCompose(t, "tools")
	if !slices.Contains(tools.ServiceNames(), "starter") {
		t.Errorf("--profile tools does not enable starter: %v", tools.ServiceNames())
	}
}

func TestComposePortsNetworkVolumes(t *testing.T) {
	p := mustLoadCompose(t, "gpu", "tools")
	wantPorts := map[string][]string{
		"temporal":    {"7233"},
		"temporal-ui": {"8080"},
		"rabbitmq":    {"15672", "5672"},
		"monitor":     {"8000"},
		"seaweedfs":   {"8333"},
	}
	for name, s := range p.Services {
		var got []string
		for _, port := range s.Ports {
			if port.Published != fmt.Sprint(port.Target) {
				t.Errorf("%s: port %s:%d, want the same number on the host", name, port.Published, port.Target)
			}
			got = append(got, port.Published)
		}
		slices.Sort(got)
		if want := wantPorts[name]; !slices.Equal(got, want) {
			t.Errorf("%s publishes %v, want %v", name, got, want)
		}
		if _, ok := s.Networks["gpu-cluster"]; !ok || len(s.Networks) != 1 {
			t.Errorf("%s networks %v, want only gpu-cluster", name, slices.Collect(maps.Keys(s.Networks)))
		}
	}
	if n, ok := p.Networks["gpu-cluster"]; !ok || n.Name != "gpu-cluster" {
		t.Errorf("network gpu-cluster missing or renamed: %+v", p.Networks)
	}
	if _, ok := p.Volumes["rabbitmq_data"]; !ok {
		t.Error("volume rabbitmq_data is not declared")
	}
	mounts := func(service, source, target string) bool {
		for _, v := range p.Services[service].Volumes {
			if v.Target == target && (v.Source == source || strings.HasSuffix(v.Source, string(filepath.Separator)+source)) {
				return true
			}
		}
		return false
	}
	if !mounts("rabbitmq", "rabbitmq_data", "/var/lib/rabbitmq") {
		t.Error("rabbitmq does not keep /var/lib/rabbitmq on rabbitmq_data")
	}
	if !mounts("monitor", "results", "/results") {
		t.Error("monitor does not mount ./results at /results")
	}
	if env := p.Services["monitor"].Environment; deref(env["RESULTS_FILE"]) != "/results/results.jsonl" || deref(env["MONITOR_ADDR"]) != "0.0.0.0:8000" {
		t.Errorf("monitor must store in /results and listen on 0.0.0.0:8000: %v %v", deref(env["RESULTS_FILE"]), deref(env["MONITOR_ADDR"]))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Start order: each dependency waits for a health check or a completed one-shot, never for a
// mere start, and a health condition names a service that has a health check.
func TestComposeDependsOn(t *testing.T) {
	p := mustLoadCompose(t, "gpu", "tools")
	want := map[string]map[string]string{
		"temporal-schema": {"postgresql": types.ServiceConditionHealthy},
		"temporal":        {"temporal-schema": types.ServiceConditionCompletedSuccessfully},
		"temporal-setup":  {"temporal": types.ServiceConditionHealthy},
		"temporal-ui":     {"temporal": types.ServiceConditionHealthy},
		"scheduler":       {"temporal-setup": types.ServiceConditionCompletedSuccessfully, "rabbitmq": types.ServiceConditionHealthy},
		"cpu-worker":      {"scheduler": types.ServiceConditionHealthy, "seaweedfs": types.ServiceConditionHealthy},
		"gpu-worker":      {"scheduler": types.ServiceConditionHealthy, "seaweedfs": types.ServiceConditionHealthy},
		"monitor":         {"rabbitmq": types.ServiceConditionHealthy},
		"starter":         {"temporal-setup": types.ServiceConditionCompletedSuccessfully, "seaweedfs": types.ServiceConditionHealthy},
	}
	for name, s := range p.Services {
		got := map[string]string{}
		for dep, d := range s.DependsOn {
			got[dep] = d.Condition
			if d.Condition == types.ServiceConditionHealthy && !hasHealthCheck(t, p.Services[dep]) {
				t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
		if !maps.Equal(got, want[name]) {
			t.Errorf("%s depends_on %v, want %v", name, got, want[name])
		}
	}
}

// hasHealthCheck: in the compose file, or in the Dockerfile the service is built from.
func hasHealthCheck(t *testing.T, s types.ServiceConfig) bool {
	if s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 {
		return true
	}
	if s.Build == nil {
		return false
	}
	return regexp.MustCompile(`(?m)^HEALTHCHECK\s+`).Match(readFile(t, s.Build.Dockerfile))
}

func TestComposeWorkers(t *testing.T) {
	p := mustLoadCompose(t, "gpu")
	gpu := p.Services["gpu-worker"]
	if gpu.Deploy == nil || gpu.Deploy.Resources.Reservations == nil || len(gpu.Deploy.Resources.Reservations.Devices) != 1 {
		t.Fatalf("gpu-worker must reserve one device under deploy.resources.reservations.devices")
	}
	dev := gpu.Deploy.Resources.Reservations.Devices[0]
	if dev.Driver != "nvidia" || dev.Count != 1 || !slices.Contains(dev.Capabilities, "gpu") {
		t.Errorf("gpu-worker reserves %+v, want one nvidia device with the gpu capability", dev)
	}

	cpu := p.Services["cpu-worker"]
	if cpu.Deploy == nil || cpu.Deploy.Resources.Limits == nil {
		t.Fatal("cpu-worker has no deploy.resources.limits")
	}
	if l := cpu.Deploy.Resources.Limits; l.NanoCPUs != 2 || l.MemoryBytes != 4<<30 {
		t.Errorf("cpu-worker limits %v CPUs, %d bytes; want 2 CPUs, 4 GiB", l.NanoCPUs, l.MemoryBytes)
	}
	if deref(cpu.Environment["OPENBLAS_NUM_THREADS"]) != "2" {
		t.Errorf("cpu-worker OPENBLAS_NUM_THREADS = %q, want its CPU limit, 2", deref(cpu.Environment["OPENBLAS_NUM_THREADS"]))
	}
	// --scale needs no fixed container name and no host port.
	if cpu.ContainerName != "" || len(cpu.Ports) != 0 {
		t.Errorf("cpu-worker cannot be scaled: container_name %q, ports %v", cpu.ContainerName, cpu.Ports)
	}

	roles := map[string]string{"scheduler": "scheduler", "cpu-worker": "cpu", "gpu-worker": "gpu"}
	for name, role := range roles {
		s := p.Services[name]
		env := s.Environment
		if got := deref(env["WORKER_TYPE"]); got != role {
			t.Errorf("%s WORKER_TYPE = %q, want %q", name, got, role)
		}
		if deref(env["LOG_FORMAT"]) != "json" || deref(env["HEALTH_ADDR"]) != ":8081" {
			t.Errorf("%s: LOG_FORMAT=%q HEALTH_ADDR=%q, want json and :8081", name, deref(env["LOG_FORMAT"]), deref(env["HEALTH_ADDR"]))
		}
		if deref(env["TEMPORAL_ADDRESS"]) != "temporal:7233" {
			t.Errorf("%s TEMPORAL_ADDRESS = %q", name, deref(env["TEMPORAL_ADDRESS"]))
		}
		stop := parseDuration(t, name+" WORKER_STOP_TIMEOUT", deref(env["WORKER_STOP_TIMEOUT"]))
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < stopGrace(stop) {
			t.Errorf("%s: stop_grace_period %v, want at least %v (WORKER_STOP_TIMEOUT %v + hand-back)", name, s.StopGracePeriod, stopGrace(stop), stop)
		}
		if s.Build == nil {
			t.Errorf("%s has no build section", name)
		} else if _, err := os.Stat(filepath.Join(repoRoot(t), s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if deref(p.Services["scheduler"].Environment["RABBITMQ_PASS"]) != testSecrets["RABBITMQ_PASS"] {
		t.Error("scheduler does not get RABBITMQ_PASS from the environment")
	}
}

// No credential is written in docker-compose.yml: every variable that holds one is exactly a
// ${VAR} reference, required (:?) and without a default; .env.example names each such variable
// and leaves it empty.
func TestComposeNoInlineSecrets(t *testing.T) {
	var raw struct {
		Services map[string]struct {
			Environment any `json:"environment"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(readFile(t, composeFile), &raw); err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`^\$\{([A-Z][A-Z0-9_]*):\?[^}]*\}$`)
	required := map[string]bool{}
	for name, s := range raw.Services {
		env, ok := s.Environment.(map[string]any)
		if s.Environment != nil && !ok {
			t.Errorf("%s: write environment as a map, so this test can read it", name)
			continue
		}
		for k, v := range env {
			if k == "<<" || !secretName.MatchString(k) {
				continue
			}
			m := ref.FindStringSubmatch(fmt.Sprint(v))
			if m == nil {
				t.Errorf("%s: %s=%v is not a required ${VAR:?...} reference", name, k, v)
				continue
			}
			required[m[1]] = true
		}
	}
	// The anchors (x-…) hold the shared client settings, RabbitMQ's password among them.
	var anchors map[string]any
	if err := yaml.Unmarshal(readFile(t, composeFile), &anchors); err != nil {
		t.Fatal(err)
	}
	for key, v := range anchors {
		block, ok := v.(map[string]any)
		if !strings.HasPrefix(key, "x-") || !ok {
			continue
		}
		for k, val := range block {
			if secretName.MatchString(k) {
				m := ref.FindStringSubmatch(fmt.Sprint(val))
				if m == nil {
					t.Errorf("%s: %s=%v is not a required ${VAR:?...} reference", key, k, val)
					continue
				}
				required[m[1]] = true
			}
		}
	}
	for _, v := range []string{"RABBITMQ_PASS", "POSTGRES_PASSWORD", "MONITOR_TOKEN"} {
		if !required[v] {
			t.Errorf("%s is not required by docker-compose.yml", v)
		}
	}

	example, err := dotenv.Read(filepath.Join(repoRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for v := range required {
		val, ok := example[v]
		if !ok {
			t.Errorf(".env.example does not name %s", v)
		} else if val != "" {
			t.Errorf(".env.example sets %s: leave passwords empty", v)
		}
	}

	// And compose refuses to start without them.
	env := exampleEnv(t)
	delete(env, "RABBITMQ_PASS")
	if _, err := loadCompose(t, env); err == nil || !strings.Contains(err.Error(), "RABBITMQ_PASS") {
		t.Errorf("loading without RABBITMQ_PASS: err = %v, want a required-variable error", err)
	}
}

// The Temporal dynamic config mounted into the compose server turns on what gpujobs uses.
func TestComposeTemporalDynamicConfig(t *testing.T) {
	p := mustLoadCompose(t)
	var file string
	for _, v := range p.Services["temporal"].Volumes {
		if strings.HasSuffix(v.Target, "/gpujobs.yaml") {
			file = v.Source
		}
	}
	path := deref(p.Services["temporal"].Environment["DYNAMIC_CONFIG_FILE_PATH"])
	if file == "" || !strings.HasSuffix(path, "gpujobs.yaml") {
		t.Fatalf("temporal does not load the mounted dynamic config (file %q, DYNAMIC_CONFIG_FILE_PATH %q)", file, path)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	checkDynamicConfig(t, "deployments/temporal/dynamicconfig.yaml", b)
}

// checkDynamicConfig: matching.enableFairness true and matching.priorityLevels 5, unconstrained.
func checkDynamicConfig(t *testing.T, where string, doc []byte) {
	t.Helper()
	type setting []struct {
		Value       any            `json:"value"`
		Constraints map[string]any `json:"constraints"`
	}
	var dc map[string]setting
	if err := yaml.UnmarshalStrict(doc, &dc); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	want := map[string]any{"matching.enableFairness": true, "matching.priorityLevels": float64(5)}
	for key, value := range want {
		s := dc[key]
		if len(s) != 1 || s[0].Value != value || len(s[0].Constraints) != 0 {
			t.Errorf("%s: %s = %+v, want one unconstrained value %v", where, key, s, value)
		}
	}
}

// The monitor's /api/queue asks the scheduler's health address over the compose network.
func TestComposeMonitorReachesTheScheduler(t *testing.T) {
	p := mustLoadCompose(t)
	mon, sched := p.Services["monitor"], p.Services["scheduler"]
	raw := deref(mon.Environment["MONITOR_SCHEDULER_URL"])
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Hostname() != "scheduler" {
		t.Fatalf("monitor MONITOR_SCHEDULER_URL %q, want http://scheduler:PORT", raw)
	}
	if h := deref(sched.Environment["HEALTH_ADDR"]); h != ":"+u.Port() {
		t.Errorf("MONITOR_SCHEDULER_URL port %s, but the scheduler's HEALTH_ADDR is %q", u.Port(), h)
	}
	shared := false
	for n := range mon.Networks {
		if _, ok := sched.Networks[n]; ok {
			shared = true
		}
	}
	if !shared {
		t.Error("the monitor and the scheduler share no network")
	}
}
