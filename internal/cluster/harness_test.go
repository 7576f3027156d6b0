package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/internal/compose"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// The cluster tests need root (network namespaces), Debian's postgresql and rabbitmq-server,
// and bin/ built (make test-cluster does all of it and sets GPUJOBS_CLUSTER=1).

const subnet = "198.18.0."

// hostPlan is every host a test cluster may have, with the compose service names it answers to.
var hostPlan = []HostSpec{
	{Name: "ctl", Addr: subnet + "2"}, // the operator's machine: the starter and the test's clients
	{Name: "db", Addr: subnet + "11", Aliases: []string{"postgresql"}},
	{Name: "temporal", Addr: subnet + "12", Aliases: []string{"temporal-ui"}},
	{Name: "broker", Addr: subnet + "13", Aliases: []string{"rabbitmq"}},
	{Name: "store", Addr: subnet + "14", Aliases: []string{"seaweedfs"}}, // the artifact store
	{Name: "sched", Addr: subnet + "21", Aliases: []string{"scheduler"}},
	{Name: "cpu1", Addr: subnet + "31"},
	{Name: "cpu2", Addr: subnet + "32"},
	{Name: "cpu3", Addr: subnet + "33"},
	{Name: "cpu4", Addr: subnet + "34"},
	{Name: "mon", Addr: subnet + "41", Aliases: []string{"monitor"}},
}

// testCluster is a running cluster and the test's clients into it, all from the ctl host.
type testCluster struct {
	*Cluster
	prefix   string
	temporal client.Client
	http     *http.Client
	vars     map[string]string
	logf     func(string, ...any)
	pids     []int // every process the cluster started, to check none outlives it
	pidsMu   sync.Mutex
	registry *jobs.Kinds
	// msPerIteration512 is a 512x512 matrix_multiply iteration's time on this machine, measured
	// by the steady state (0 until then).
	msPerIteration512 float64
}

// enabled skips unless GPUJOBS_CLUSTER=1.
func enabled(tb testing.TB) {
	tb.Helper()
	if os.Getenv("GPUJOBS_CLUSTER") != "1" {
		tb.Skip("cluster test: set GPUJOBS_CLUSTER=1 and run as root (make test-cluster does)")
	}
	if os.Getuid() != 0 {
		tb.Fatal("GPUJOBS_CLUSTER=1 but not root: network namespaces need root")
	}
}

// newTestCluster creates the hosts and starts the placed services; teardown (also when the test
// fails or panics) kills every process, removes every namespace and link, and checks that
// nothing is left.
func newTestCluster(tb testing.TB, workers int, extraPlacements ...Placement) *testCluster {
	tb.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	bin := os.Getenv("GPUJOBS_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "bin")
	}
	for _, b := range []string{"worker", "monitor", "starter", "devserver", "temporal-sql-tool"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			tb.Fatalf("%s/%s missing: make test-cluster builds it", bin, b)
		}
	}
	for _, tool := range []string{"ip", "unshare", "setpriv", pgBin + "/postgres", "/usr/lib/rabbitmq/bin/rabbitmq-server", "nc", "curl", "pg_isready"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s is not installed: make test-cluster installs it (%v)", tool, err)
		}
	}
	prefix := os.Getenv("GPUJOBS_CLUSTER_PREFIX")
	if prefix == "" {
		prefix = "gjc-" + randomHex(3)
	}
	work := filepath.Join(os.TempDir(), prefix)
	if err := os.MkdirAll(filepath.Join(work, "logs"), 0o755); err != nil {
		tb.Fatal(err)
	}
	os.Chmod(work, 0o755) //nolint:errcheck // the hosts' unprivileged users must reach their dirs

	tc := &testCluster{prefix: prefix, registry: builtin.Kinds()}
	tc.logf = func(format string, args ...any) {
		fmt.Printf("cluster: "+format+"\n", args...)
	}
	// Teardown runs whatever happens below; it is registered first so that it runs last.
	tb.Cleanup(func() { tc.teardown(tb, work) })

	// The compose file's variables: .env.example with fresh passwords, as a user's .env is.
	tc.vars, err = compose.ReadEnvFile(filepath.Join(repo, ".env.example"))
	if err != nil {
		tb.Fatal(err)
	}
	tc.vars["RABBITMQ_PASS"] = "rmq-" + randomHex(8)
	tc.vars["POSTGRES_PASSWORD"] = "pg-" + randomHex(8)
	tc.vars["S3_ACCESS_KEY"] = "GJ" + randomHex(8)
	tc.vars["S3_SECRET_KEY"] = "s3-" + randomHex(16)
	tc.vars["MONITOR_TOKEN"] = "mon-" + randomHex(12)
	file, err := compose.Load(filepath.Join(repo, "docker-compose.yml"), tc.vars)
	if err != nil {
		tb.Fatal(err)
	}
	for _, b := range []string{"worker", "monitor", "starter", "devserver", "temporal-sql-tool"} {
		if err := copyFile(filepath.Join(bin, b), filepath.Join(work, "bin", b), 0o755); err != nil {
			tb.Fatal(err)
		}
	}

	var hosts []HostSpec
	for _, h := range hostPlan {
		if strings.HasPrefix(h.Name, "cpu") && h.Name > fmt.Sprintf("cpu%d", workers) {
			continue
		}
		hosts = append(hosts, h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	n, err := NewNetwork(ctx, filepath.Join(repo, "scripts", "cluster-net.sh"), prefix, hosts)
	if err != nil {
		tb.Fatal(err)
	}
	tc.Cluster = &Cluster{Repo: repo, Bin: bin, Work: work, Net: n, Compose: file, SchemaDir: schemaDir(tb, repo), Logf: tc.logf}
	tc.logf("hosts %s: %d namespaces on a bridge, %s0/24; work directory %s", prefix, len(hosts), subnet, work)

	placements := []Placement{
		{"postgresql", "postgresql", "db"},
		{"temporal-schema", "temporal-schema", "temporal"},
		{"temporal", "temporal", "temporal"},
		{"temporal-setup", "temporal-setup", "ctl"},
		{"temporal-ui", "temporal-ui", "temporal"},
		{"rabbitmq", "rabbitmq", "broker"},
		{"seaweedfs", "seaweedfs", "store"},
		{"scheduler", "scheduler", "sched"},
		{"monitor", "monitor", "mon"},
	}
	for i := 1; i <= workers; i++ {
		placements = append(placements, Placement{fmt.Sprintf("cpu%d", i), "cpu-worker", fmt.Sprintf("cpu%d", i)})
	}
	placements = append(placements, extraPlacements...)
	if err := tc.Up(ctx, placements); err != nil {
		tb.Fatalf("cluster did not come up: %v", err)
	}
	for _, p := range placements {
		tc.track(tc.Instance(p.Instance))
	}
	tc.logf("up in %.1fs: %d services on %d hosts", time.Since(start).Seconds(), len(placements), len(hosts))

	ctl := n.Host("ctl")
	dial := ctl.Dialer()
	tc.http = &http.Client{Timeout: 10 * time.Second, Transport: bearer{tc.vars["MONITOR_TOKEN"], &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, err := ctl.Resolve(addr)
			if err != nil {
				return nil, err
			}
			return dial(ctx, network, a)
		},
		DisableKeepAlives: true,
	}}}
	env := file.Services["starter"].Environment
	if tc.temporal, err = ctl.TemporalClient(ctx, env["TEMPORAL_ADDRESS"], env["TEMPORAL_NAMESPACE"]); err != nil {
		tb.Fatal(err)
	}
	return tc
}

// track records an instance's current process, for the leftover check.
func (tc *testCluster) track(inst *Instance) {
	if inst == nil || inst.Proc == nil {
		return
	}
	tc.pidsMu.Lock()
	tc.pids = append(tc.pids, inst.Proc.Pid)
	tc.pidsMu.Unlock()
}

// restart starts an instance again and tracks its new process.
func (tc *testCluster) start(tb testing.TB, inst *Instance) {
	tb.Helper()
	if err := tc.Start(context.Background(), inst); err != nil {
		tb.Fatal(err)
	}
	tc.track(inst)
}

func (tc *testCluster) teardown(tb testing.TB, work string) {
	if tc.temporal != nil {
		tc.temporal.Close()
	}
	if tc.Cluster != nil && tc.Net != nil {
		if err := tc.Net.Down(); err != nil {
			tb.Error(err)
		}
		if left := tc.Net.Leftovers(); left != "" {
			tb.Errorf("teardown left something behind:\n%s", left)
		}
	}
	tc.pidsMu.Lock()
	for _, pid := range tc.pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
			tb.Errorf("process %d outlived the cluster: %s", pid, b)
		}
	}
	tc.pidsMu.Unlock()
	if tb.Failed() {
		if dst := os.Getenv("GPUJOBS_CLUSTER_LOGS"); dst != "" {
			os.RemoveAll(dst)
			if out, err := exec.Command("cp", "-r", filepath.Join(work, "logs"), dst).CombinedOutput(); err == nil {
				tb.Logf("cluster logs kept in %s", dst)
			} else {
				tb.Logf("copy logs: %v %s", err, out)
			}
		}
	}
	if err := os.RemoveAll(work); err != nil {
		tb.Errorf("remove %s: %v", work, err)
	}
	tc.logf("torn down: no namespace, link or process of %s left", tc.prefix)
}

// schemaDir is the go.temporal.io/server module's schema/ (the devserver module's version).
func schemaDir(tb testing.TB, repo string) string {
	if d := os.Getenv("GPUJOBS_TEMPORAL_SCHEMA"); d != "" {
		return d
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/server")
	cmd.Dir = filepath.Join(repo, "devserver")
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("find the Temporal server module (for its SQL schema): %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "schema")
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b)
}

// getJSON fetches a URL (from the ctl host) into v.
func (tc *testCluster) getJSON(url string, v any) error {
	resp, err := tc.http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// bearer sends the monitor's token (MONITOR_TOKEN of the compose file's variables) with each
// request: the compose monitor serves beyond its host, so its API requires it.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// monitorURL is where the ctl host reaches the monitor's API.
func (tc *testCluster) monitorURL(path string) string { return "http://monitor:8000" + path }

type monitorTotals struct {
	Results    int   `json:"results"`
	Completed  int   `json:"completed"`
	Failed     int   `json:"failed"`
	Duplicates int64 `json:"duplicates"`
}

func (tc *testCluster) monitorStats() (monitorTotals, error) {
	var s struct {
		Totals monitorTotals `json:"totals"`
	}
	err := tc.getJSON(tc.monitorURL("/api/stats"), &s)
	return s.Totals, err
}

// monitorCounts returns, for each job ID in ids, how many results the monitor holds for it.
func (tc *testCluster) monitorCounts(ids []string) (map[string]int, error) {
	var r struct {
		Results []jobs.Result `json:"results"`
	}
	if err := tc.getJSON(tc.monitorURL("/api/results?limit=0"), &r); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	counts := map[string]int{}
	for _, res := range r.Results {
		if want[res.JobID] {
			counts[res.JobID]++
		}
	}
	return counts, nil
}

// tinyJob is a job of a few milliseconds.
func (tc *testCluster) tinyJob(tb testing.TB) jobs.Request {
	return tc.job(tb, "vector_addition", `{"size": 1000, "iterations": 1}`)
}

func (tc *testCluster) job(tb testing.TB, kind, params string) jobs.Request {
	tb.Helper()
	req, err := jobclient.Build(jobclient.Spec{JobType: kind, Params: params, Device: "cpu"}, tc.registry)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// submit starts the jobs through the starter's code path (jobclient), from the ctl host.
func (tc *testCluster) submit(tb testing.TB, reqs ...jobs.Request) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := make([]string, len(reqs))
	for i, err := range jobclient.SubmitAll(ctx, tc.temporal, reqs) {
		if err != nil {
			tb.Fatalf("submit: %v", err)
		}
		ids[i] = reqs[i].JobID
	}
	return ids
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}
