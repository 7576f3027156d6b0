package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
)

// arrivals records when each job's result reached the monitor, from its event stream.
type arrivals struct {
	mu   sync.Mutex
	at   map[string]time.Time
	wake chan struct{}
}

// watchResults follows the monitor's /api/events from the ctl host until the test ends.
func (tc *testCluster) watchResults(tb testing.TB) *arrivals {
	tb.Helper()
	a := &arrivals{at: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	ctl := tc.Net.Host("ctl")
	dial := ctl.Dialer()
	client := &http.Client{Transport: bearer{tc.vars["MONITOR_TOKEN"], &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		r, err := ctl.Resolve(addr)
		if err != nil {
			return nil, err
		}
		return dial(ctx, network, r)
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tb.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil { // reconnect if the monitor restarts
			req, _ := http.NewRequestWithContext(ctx, "GET", tc.monitorURL("/api/events"), nil)
			resp, err := client.Do(req)
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			event := ""
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "event: "):
					event = strings.TrimPrefix(line, "event: ")
				case strings.HasPrefix(line, "data: ") && event == "result":
					var r struct {
						JobID string `json:"job_id"`
					}
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &r) == nil {
						a.mu.Lock()
						if _, seen := a.at[r.JobID]; !seen {
							a.at[r.JobID] = time.Now()
						}
						a.mu.Unlock()
						select {
						case a.wake <- struct{}{}:
						default:
						}
					}
				}
			}
			resp.Body.Close()
		}
	}()
	return a
}

// wait returns when every id has arrived, and the time of the last arrival.
func (a *arrivals) wait(tb testing.TB, ids []string, timeout time.Duration) (map[string]time.Time, time.Time) {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		got := map[string]time.Time{}
		var last time.Time
		for _, id := range ids {
			if t, ok := a.at[id]; ok {
				got[id] = t
				if t.After(last) {
					last = t
				}
			}
		}
		a.mu.Unlock()
		if len(got) == len(ids) {
			return got, last
		}
		select {
		case <-a.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			tb.Fatalf("%d of %d results reached the monitor within %s", len(got), len(ids), timeout)
		}
	}
}

// scalePoint is one configuration's figures.
type scalePoint struct {
	round              int
	server             string
	workers            int
	p50, p95           time.Duration // one job at a time, submit to result at the monitor
	burstP50, burstP95 time.Duration // submit to result, all jobs of the burst at once
	rate               float64       // burst jobs per second: n / (last result - first submit)
}

// BenchmarkClusterScale: tiny jobs through the whole cluster (starter code path on the ctl host,
// Temporal, the scheduler host, 1, 2 or 4 CPU worker hosts, RabbitMQ, the monitor host), with
// the Temporal server on PostgreSQL as docker-compose.yml runs it, and then with the dev server
// (SQLite file, as make dev runs it) in its place on the same host. Latency is submit to result
// at the monitor; every ratio compares figures measured in this run.
//
// On a 2-core machine every host shares the same two cores: this measures the overhead and
// contention of the pieces, not the capacity of a cluster.
func BenchmarkClusterScale(b *testing.B) {
	enabled(b)
	const seqN, burstN, rounds = 40, 200, 2
	tc := newTestCluster(b, 4)
	arr := tc.watchResults(b)
	counts := []int{1, 2, 4}
	var points []scalePoint

	measure := func(round int, server string, workers int) scalePoint {
		tc.scaleWorkers(b, workers)
		run := func(n int) ([]time.Duration, float64) {
			reqs := tc.tinyJobs(b, n)
			submitted := map[string]time.Time{}
			var ids []string
			start := time.Now()
			for _, r := range reqs {
				submitted[r.JobID] = time.Now()
				ids = append(ids, r.JobID)
			}
			tc.submitJobs(b, reqs...)
			at, last := arr.wait(b, ids, 5*time.Minute)
			lat := make([]time.Duration, 0, n)
			for _, id := range ids {
				lat = append(lat, at[id].Sub(submitted[id]))
			}
			return lat, float64(n) / last.Sub(start).Seconds()
		}
		for range 10 { // warm-up: connections, caches, the scheduler's estimates
			run(1)
		}
		var seq []time.Duration
		for range seqN {
			l, _ := run(1)
			seq = append(seq, l...)
		}
		burst, rate := run(burstN)
		p := scalePoint{round: round, server: server, workers: workers, p50: quantile(seq, 0.5), p95: quantile(seq, 0.95),
			burstP50: quantile(burst, 0.5), burstP95: quantile(burst, 0.95), rate: rate}
		tc.logf("scale: round %d %-10s %d worker host(s): one at a time p50 %s p95 %s; burst of %d: %.1f jobs/s, p50 %s p95 %s",
			round, server, workers, ms(p.p50), ms(p.p95), burstN, p.rate, ms(p.burstP50), ms(p.burstP95))
		return p
	}

	b.ResetTimer()
	for b.Loop() {
		// Two rounds, each server in turn: the machine's load drifts, and a ratio is taken
		// between figures of the same round.
		for round := 1; round <= rounds; round++ {
			if round > 1 {
				tc.switchServer(b, tc.Instance("devserver"), tc.Instance("temporal"))
			}
			for _, w := range counts {
				points = append(points, measure(round, "postgresql", w))
			}
			tc.logf("scale: PostgreSQL connections after the bursts: %s", tc.pgConnections(b))
			tc.switchServer(b, tc.Instance("temporal"), tc.devServer(b))
			for _, w := range counts {
				points = append(points, measure(round, "sqlite-dev", w))
			}
		}
		// The PostgreSQL server again with the dev server's history queue poll limits, to tell
		// what the persistence costs from what Temporal's default limits cost.
		tc.switchServer(b, tc.Instance("devserver"), tc.Instance("temporal"))
		tc.tuneTemporal(b, devPollRPS)
		for _, w := range counts {
			points = append(points, measure(rounds, "pg+pollrps", w))
		}
	}
	b.StopTimer()
	printScale(points)
	get := func(round int, server string, w int) scalePoint {
		for _, p := range points {
			if p.round == round && p.server == server && p.workers == w {
				return p
			}
		}
		b.Fatalf("no figure for round %d %s %d workers", round, server, w)
		return scalePoint{}
	}
	// Ratios per round, then their geometric mean over the rounds.
	mean := func(f func(round int) float64) float64 {
		prod := 1.0
		for r := 1; r <= rounds; r++ {
			prod *= f(r)
		}
		return math.Pow(prod, 1/float64(rounds))
	}
	for _, w := range counts {
		b.ReportMetric(mean(func(r int) float64 { return get(r, "postgresql", w).rate }), fmt.Sprintf("pg-%dw-jobs/s", w))
		b.ReportMetric(mean(func(r int) float64 { return get(r, "postgresql", w).rate / get(r, "sqlite-dev", w).rate }), fmt.Sprintf("pg/sqlite-%dw-rate", w))
		b.ReportMetric(mean(func(r int) float64 {
			return float64(get(r, "postgresql", w).p50) / float64(get(r, "sqlite-dev", w).p50)
		}), fmt.Sprintf("pg/sqlite-%dw-p50", w))
		b.ReportMetric(get(rounds, "pg+pollrps", w).rate/get(rounds, "postgresql", w).rate, fmt.Sprintf("pollrps/pg-%dw-rate", w))
	}
	for _, server := range []string{"postgresql", "sqlite-dev"} {
		for _, w := range counts[1:] {
			b.ReportMetric(mean(func(r int) float64 { return get(r, server, w).rate / get(r, server, 1).rate }), fmt.Sprintf("%s-%dw/1w-rate", server, w))
		}
	}
	b.ReportMetric(0, "ns/op")
}

// scaleWorkers leaves exactly n CPU worker hosts serving: cpu1..cpuN run, the others are
// stopped as `docker compose --scale` would (SIGTERM).
func (tc *testCluster) scaleWorkers(tb testing.TB, n int) {
	tb.Helper()
	for i := 1; i <= 4; i++ {
		inst := tc.Instance(fmt.Sprintf("cpu%d", i))
		if inst == nil {
			continue
		}
		running := inst.Proc != nil
		if running {
			select {
			case <-inst.Proc.Done():
				running = false
			default:
			}
		}
		switch {
		case i > n && running:
			tc.Stop(inst, 40*time.Second)
		case i <= n && !running:
			tc.start(tb, inst)
			if err := tc.WaitHealthy(context.Background(), inst, time.Minute); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// devPollRPS are the dev server's history queue poll limits (devserver/config.go); Temporal's
// default is 20 polls/s per shard for each queue.
var devPollRPS = map[string]int{
	"history.transferProcessorMaxPollRPS":   10000,
	"history.timerProcessorMaxPollRPS":      10000,
	"history.visibilityProcessorMaxPollRPS": 10000,
}

// tuneTemporal restarts the Temporal server with deployments/temporal/dynamicconfig.yaml plus
// the given keys.
func (tc *testCluster) tuneTemporal(tb testing.TB, extra map[string]int) {
	tb.Helper()
	server := tc.Instance("temporal")
	base, err := os.ReadFile(server.Cmd.Env["DYNAMIC_CONFIG_FILE_PATH"])
	if err != nil {
		tb.Fatal(err)
	}
	doc := string(base) + "\n# cluster benchmark: the dev server's values\n"
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		doc += fmt.Sprintf("%s:\n  - value: %d\n    constraints: {}\n", k, extra[k])
	}
	path := filepath.Join(tc.Work, "run", "temporal", "dynamicconfig-tuned.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		tb.Fatal(err)
	}
	server.Cmd.Env["DYNAMIC_CONFIG_FILE_PATH"] = path
	if err := tc.Restart(context.Background(), server, 30*time.Second); err != nil {
		tb.Fatal(err)
	}
	tc.track(server)
	if err := tc.WaitHealthy(context.Background(), server, time.Minute); err != nil {
		tb.Fatal(err)
	}
}

// pgConnections counts PostgreSQL's client connections, by database.
func (tc *testCluster) pgConnections(tb testing.TB) string {
	tb.Helper()
	pg := tc.Instance("postgresql")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := pg.Host.Run(ctx, Command{Name: "psql", User: "postgres", Env: pg.Cmd.Env,
		Argv: []string{"psql", "-U", pg.Cmd.Env["POSTGRES_USER"], "-d", "postgres", "-At", "-c",
			"select datname || '=' || count(*) from pg_stat_activity where backend_type = 'client backend' group by datname order by datname; show max_connections"}})
	if err != nil {
		return fmt.Sprintf("psql: %v %s", err, out)
	}
	return strings.Join(strings.Fields(out), ", ") + " (the last figure is max_connections)"
}

// devServer is the dev server on a SQLite file (make dev's command line, listening on the
// temporal host's address), as an instance of the temporal host; it is started by switchServer.
func (tc *testCluster) devServer(tb testing.TB) *Instance {
	if d := tc.Instance("devserver"); d != nil {
		return d
	}
	server := tc.Instance("temporal")
	if err := os.MkdirAll(filepath.Join(tc.Work, "devserver"), 0o755); err != nil {
		tb.Fatal(err)
	}
	dev := &Instance{
		Name: "devserver", Service: server.Service, Host: server.Host, StopSignal: server.StopSignal,
		Health: server.Health,
		Cmd: Command{Name: "devserver", Argv: []string{filepath.Join(tc.Work, "bin", "devserver"), "server", "start-dev",
			"--ip", "0.0.0.0", "--port", "7233", "--headless", "--db-filename", filepath.Join(tc.Work, "devserver", "temporal.db")},
			Log: tc.LogPath("devserver"), Dir: tc.Work},
	}
	tc.mu.Lock()
	tc.instances["devserver"] = dev
	tc.mu.Unlock()
	return dev
}

// switchServer stops one Temporal server of the temporal host and starts the other in its place
// (same address), then restarts the scheduler and the running workers so that they start afresh
// against it.
func (tc *testCluster) switchServer(tb testing.TB, from, to *Instance) {
	tb.Helper()
	tc.Stop(from, 30*time.Second)
	tc.start(tb, to)
	if err := tc.WaitHealthy(context.Background(), to, time.Minute); err != nil {
		tb.Fatal(err)
	}
	for _, name := range append([]string{"scheduler"}, tc.workerNames()...) {
		inst := tc.Instance(name)
		select {
		case <-inst.Proc.Done():
			continue // scaled down
		default:
		}
		tc.Stop(inst, 40*time.Second)
		tc.start(tb, inst)
		if err := tc.WaitHealthy(context.Background(), inst, time.Minute); err != nil {
			tb.Fatal(err)
		}
	}
	// The test's own client reconnects by itself; a first job proves the new server serves.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := jobclient.Submit(ctx, tc.temporal, tc.tinyJob(tb)); err != nil {
		tb.Fatalf("submit to %s: %v", to.Name, err)
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d.Microseconds())/1e3) }

func printScale(points []scalePoint) {
	var b strings.Builder
	fmt.Fprintf(&b, "\ncluster scale (tiny vector_addition jobs; latency = submit to result at the monitor; 2 cores shared by every host)\n")
	fmt.Fprintf(&b, "| %5s | %-10s | %7s | %12s | %12s | %13s | %15s | %15s |\n", "round", "Temporal", "workers", "one p50", "one p95", "burst jobs/s", "burst p50", "burst p95")
	fmt.Fprintf(&b, "|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 7), strings.Repeat("-", 12), strings.Repeat("-", 9), strings.Repeat("-", 14), strings.Repeat("-", 14), strings.Repeat("-", 15), strings.Repeat("-", 17), strings.Repeat("-", 17))
	for _, p := range points {
		fmt.Fprintf(&b, "| %5d | %-10s | %7d | %12s | %12s | %13.1f | %15s | %15s |\n", p.round, p.server, p.workers, ms(p.p50), ms(p.p95), p.rate, ms(p.burstP50), ms(p.burstP95))
	}
	fmt.Print(b.String())
}
