package monitor

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/html"

	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// chromiumPath finds Debian's chromium. Without it the dashboard tests skip, unless GPUJOBS_E2E=1
// (make test), where a missing browser is a failure: make deps installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("GPUJOBS_E2E") == "1" {
		t.Fatal("chromium is not installed: make deps installs it (Debian package chromium)")
	}
	t.Skip("chromium is not installed (make deps, or apt-get install chromium): dashboard not tested in a browser")
	return ""
}

// headless runs chromium on url with the flags this machine needs, and returns its stdout.
// --virtual-time-budget lets the page's fetches and timers run before the DOM is dumped.
func headless(t *testing.T, bin, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=8000"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, testutil.TailLines(stderr.String(), 20))
	}
	return stdout.Bytes()
}

// dashboardServer serves a monitor fed with a realistic day's slice of results on a fixed clock.
// The first /api/stats request adds more results and wakes the streams, as the consumer does,
// so the page must update live to show the final numbers.
// Each of with sets the server up further before it serves.
func dashboardServer(t *testing.T, with ...func(*Server)) (*httptest.Server, *Aggregator) {
	t.Helper()
	results := fixtureResults(3000, 42, t0)
	now := results[len(results)-1].EndTime.Add(20 * time.Second)
	agg := NewAggregator(NewMetrics())
	agg.SetClock(func() time.Time { return now })
	agg.Add(results[:2900]...)
	agg.CountDuplicates(12)
	agg.CountMalformed()
	agg.CountRejected()
	agg.CountRejected()
	agg.SetRejectedAtLoad(3)
	srv := NewServer(agg, agg.metrics, func() bool { return true }, "results/results.jsonl", zap.NewNop())
	srv.MaxStreamAge = 300 * time.Millisecond
	for _, f := range with {
		f(srv)
	}
	h := srv.Handler()
	var once sync.Once
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == "/api/stats" {
			once.Do(func() {
				agg.Add(results[2900:]...)
				srv.Notify()
			})
		}
	}))
	t.Cleanup(ts.Close)
	return ts, agg
}

func TestDashboardInHeadlessChromiumShowsTheAPINumbers(t *testing.T) {
	bin := chromiumPath(t)
	ts, agg := dashboardServer(t)
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	stats, speed := agg.Stats(), agg.Speedup()
	if stats.Totals.Results != 3000 {
		t.Fatalf("the live update did not happen: %d results", stats.Totals.Results)
	}
	body := find(doc, func(n *html.Node) bool { return n.Data == "body" })
	if attr(body, "data-loaded") != "1" || attr(body, "data-results") != "3000" {
		t.Fatalf("page not rendered with the final numbers: data-loaded=%q data-results=%q", attr(body, "data-loaded"), attr(body, "data-results"))
	}

	tt := stats.Totals
	for id, want := range map[string]float64{
		"kpi-results": float64(tt.Results), "kpi-completed": float64(tt.Completed), "kpi-failed": float64(tt.Failed),
		"kpi-canceled": float64(tt.Canceled), "kpi-gpu-runs": float64(tt.GPURuns), "kpi-cpu-runs": float64(tt.CPURuns),
		"kpi-fallbacks": float64(tt.Fallbacks), "kpi-duplicates": float64(tt.Duplicates), "kpi-malformed": float64(tt.Malformed),
		"kpi-rejected": float64(tt.Rejected), "kpi-rejected-at-load": float64(tt.RejectedAtLoad),
		"kpi-throughput-minute": stats.Throughput.LastMinute, "kpi-throughput-overall": stats.Throughput.Overall,
	} {
		n := byID(doc, id)
		if n == nil {
			t.Errorf("no #%s", id)
			continue
		}
		if got := num(t, attr(n, "data-value")); got != want {
			t.Errorf("#%s data-value %v, API %v", id, got, want)
		}
		shown := strings.ReplaceAll(text(n), ",", "")
		if v, err := strconv.ParseFloat(shown, 64); err != nil || !roughly(v, want, 0.01) {
			t.Errorf("#%s shows %q, API %v", id, text(n), want)
		}
	}

	bars := findAll(doc, func(n *html.Node) bool { return hasClass(n, "speedup-bar") })
	compared := 0
	for _, js := range speed.JobTypes {
		if js.Speedup == 0 {
			continue
		}
		compared++
		bar := find(doc, func(n *html.Node) bool { return hasClass(n, "speedup-bar") && attr(n, "data-job-type") == js.JobType })
		if bar == nil {
			t.Errorf("no speedup bar for %s", js.JobType)
			continue
		}
		if got := num(t, attr(bar, "data-value")); got != js.Speedup {
			t.Errorf("%s speedup bar %v, API %v", js.JobType, got, js.Speedup)
		}
		label := find(bar, func(n *html.Node) bool { return hasClass(n, "speedup-label") })
		if v, err := strconv.ParseFloat(strings.TrimSuffix(text(label), "×"), 64); err != nil || !roughly(v, js.Speedup, 0.01) {
			t.Errorf("%s speedup label %q, API %v", js.JobType, text(label), js.Speedup)
		}
	}
	if compared != 4 || len(bars) != compared {
		t.Errorf("%d speedup bars, %d job types compared (want 4)", len(bars), compared)
	}
	pairs := 0
	for _, js := range speed.JobTypes {
		pairs += len(js.Compared)
	}
	if rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "compared") }); len(rows) != pairs || pairs != 6 {
		t.Errorf("%d compared-params rows, API %d (want 6)", len(rows), pairs)
	}

	rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-group") != "" })
	if len(rows) != len(stats.Groups) {
		t.Errorf("%d group rows, API %d groups", len(rows), len(stats.Groups))
	}
	for _, g := range stats.Groups {
		key := g.JobType + "/" + g.WorkerType
		row := find(doc, func(n *html.Node) bool { return attr(n, "data-group") == key })
		if row == nil {
			t.Errorf("no row for %s", key)
			continue
		}
		cell := func(f string) string {
			return attr(find(row, func(n *html.Node) bool { return attr(n, "data-field") == f }), "data-value")
		}
		if cell("results") != strconv.Itoa(g.Results) {
			t.Errorf("%s results %s, API %d", key, cell("results"), g.Results)
		}
		if gt := g.GPUTelemetry; gt != nil {
			if num(t, cell("gpu_util")) != gt.UtilizationMean || num(t, cell("gpu_mem")) != float64(gt.MemoryPeak) {
				t.Errorf("%s GPU util/mem %s/%s, API %v/%v", key, cell("gpu_util"), cell("gpu_mem"), gt.UtilizationMean, gt.MemoryPeak)
			}
		} else if cell("gpu_util") != "" {
			t.Errorf("%s GPU util %s without telemetry in the API", key, cell("gpu_util"))
		}
		if g.ProcessingTime != nil {
			if num(t, cell("p95")) != g.ProcessingTime.P95 || num(t, cell("avg")) != g.ProcessingTime.Avg {
				t.Errorf("%s p95/avg %s/%s, API %v/%v", key, cell("p95"), cell("avg"), g.ProcessingTime.P95, g.ProcessingTime.Avg)
			}
			if g.WorkerType == "cpu" || g.WorkerType == "gpu" {
				bar := find(doc, func(n *html.Node) bool {
					return hasClass(n, "time-bar") && attr(n, "data-job-type") == g.JobType && attr(n, "data-worker-type") == g.WorkerType
				})
				if bar == nil || num(t, attr(bar, "data-value")) != g.ProcessingTime.Avg {
					t.Errorf("%s time bar %v, API avg %v", key, bar != nil, g.ProcessingTime.Avg)
				}
			}
		}
	}

	latest, _ := agg.Results(Filter{Limit: 15})
	trs := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-job-id") != "" })
	if len(trs) != 15 || attr(trs[0], "data-job-id") != latest[0].JobID {
		t.Errorf("latest table: %d rows, first %q, API newest %s", len(trs), attr(trs[0], "data-job-id"), latest[0].JobID)
	}
	if svg := findAll(byID(doc, "throughput-chart"), func(n *html.Node) bool { return n.Data == "rect" }); len(svg) < 20 {
		t.Errorf("throughput chart has %d bars", len(svg))
	}
}

// TestDashboardScreenshot writes the screenshot kept in docs/ when GPUJOBS_SCREENSHOT names the
// file: GPUJOBS_SCREENSHOT=$PWD/docs/dashboard.png go test -run Screenshot ./internal/monitor
func TestDashboardScreenshot(t *testing.T) {
	out := os.Getenv("GPUJOBS_SCREENSHOT")
	if out == "" {
		t.Skip("set GPUJOBS_SCREENSHOT=/path/dashboard.png to write the dashboard's screenshot")
	}
	bin := chromiumPath(t)
	ts, _ := dashboardServer(t, withQueues(t))
	abs, _ := filepath.Abs(out)
	headless(t, bin, ts.URL+"/", "--screenshot="+abs, "--window-size=1400,1000")
	if st, err := os.Stat(abs); err != nil || st.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", abs, err)
	}
}

func roughly(a, b, rel float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= rel*max(b, -b) || d < 0.006
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Errorf("not a number: %q", s)
	}
	return v
}

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, c string) bool {
	return n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+c+" ")
}

func byID(doc *html.Node, id string) *html.Node {
	return find(doc, func(n *html.Node) bool { return attr(n, "id") == id })
}

func find(n *html.Node, pred func(*html.Node) bool) *html.Node {
	if all := findAll(n, pred); len(all) > 0 {
		return all[0]
	}
	return nil
}

func findAll(n *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && pred(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if n != nil {
		walk(n)
	}
	return out
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

// A kind the monitor was not built with shows its own headline metric, the one its results name,
// in the dashboard's tables.
func TestDashboardShowsAnUnknownKindsHeadlineMetric(t *testing.T) {
	bin := chromiumPath(t)
	agg := NewAggregator(nil)
	end := time.Now().Add(-time.Second).UTC()
	agg.Add(jobs.Result{JobID: "job-00000000pi01", JobType: "monte_carlo_pi", Status: jobs.StatusCompleted, WorkerType: jobs.WorkerTypeCPU,
		WorkerID: "cpu-1", ProcessingTime: 0.5, StartTime: end.Add(-time.Second), EndTime: end,
		Metrics:    map[string]float64{"samples_per_sec": 4.2e7, "gflops": 9.9, "pi": 3.1415},
		RateMetric: "samples_per_sec", RateUnit: "samples/s"})
	srv := NewServer(agg, nil, func() bool { return true }, "x", zap.NewNop())
	srv.MaxStreamAge = 300 * time.Millisecond
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	row := find(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-job-id") == "job-00000000pi01" })
	if row == nil {
		t.Fatal("the result is not in the latest results")
	}
	if got := text(row); !strings.Contains(got, "samples/s") || strings.Contains(got, "GFLOP/s") {
		t.Errorf("latest row %q: want the kind's samples/s, not GFLOP/s", got)
	}
	if g := agg.Stats().Groups; len(g) != 1 || g[0].Rate == nil || g[0].Rate.Unit != "samples/s" {
		t.Errorf("groups %+v: want the kind's rate unit", g)
	}
}

// The dashboard's usage table shows /api/usage's numbers per tenant.
func TestDashboardShowsUsagePerTenant(t *testing.T) {
	bin := chromiumPath(t)
	ts, agg := dashboardServer(t)
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	u := agg.Usage(time.Time{}, time.Time{})
	if len(u.Tenants) == 0 {
		t.Fatal("the fixture has no usage")
	}
	for _, tu := range u.Tenants {
		row := find(doc, func(n *html.Node) bool {
			return n.Data == "tr" && hasClass(n, "usage-tenant") && attr(n, "data-tenant") == tu.Tenant
		})
		if row == nil {
			t.Errorf("no usage row for tenant %q", tu.Tenant)
			continue
		}
		cells := findAll(row, func(n *html.Node) bool { return n.Data == "td" && attr(n, "data-value") != "" })
		if len(cells) < 3 || num(t, attr(cells[0], "data-value")) != float64(tu.Jobs) || !roughly(num(t, attr(cells[2], "data-value")), tu.GPUSeconds, 1e-9) {
			t.Errorf("tenant %q row %q, API %+v", tu.Tenant, text(row), tu.UsageCounts)
		}
	}
}

// withQueues gives a dashboard server a scheduler worker with twelve jobs waiting on cpu_queue
// behind a running one, one a minute, and one on gpu_queue, which no worker polls.
func withQueues(t *testing.T) func(*Server) {
	at := time.Now().UTC().Truncate(time.Second)
	snap := jobs.QueueSnapshot{At: at}
	for i := 1; i <= 12; i++ {
		snap.Jobs = append(snap.Jobs, jobs.Prediction{JobID: "job-cpu-" + strconv.Itoa(i), Queue: jobs.CPUQueue, Position: i, Waiting: 12, Running: 1, Pollers: 1,
			PredictedStart: at.Add(time.Duration(i) * time.Minute), PredictedEnd: at.Add(time.Duration(i+1) * time.Minute)})
	}
	snap.Jobs = append(snap.Jobs,
		jobs.Prediction{JobID: "job-cpu-running", Queue: jobs.CPUQueue, Waiting: 12, Running: 1, Pollers: 1, PredictedEnd: at.Add(time.Minute)},
		jobs.Prediction{JobID: "job-gpu-1", Queue: jobs.GPUQueue, Position: 1, Waiting: 1, PredictedStart: at.Add(90 * time.Second), PredictedEnd: at.Add(2 * time.Hour)})
	sched := httptest.NewServer(serveJSON(snap))
	t.Cleanup(sched.Close)
	return func(s *Server) { s.SetQueue(&QueueSource{URL: sched.URL}) }
}

// The dashboard's queue card shows /api/queue: per queue its counts, the next ten waiting jobs in
// order with their predicted starts counted from the snapshot's time, how many more wait, and a
// queue that no worker polls; without --scheduler-url it says how to set it.
func TestDashboardShowsTheQueues(t *testing.T) {
	bin := chromiumPath(t)
	ts, _ := dashboardServer(t, withQueues(t))
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	if box := byID(doc, "queue"); box == nil || attr(box, "data-state") != "on" {
		t.Fatalf("queue card not rendered: %q", describe(box))
	}
	for q, want := range map[string][3]string{jobs.CPUQueue: {"12", "1", "1"}, jobs.GPUQueue: {"1", "0", "0"}} {
		sum := find(doc, func(n *html.Node) bool { return hasClass(n, "queue-summary") && attr(n, "data-queue") == q })
		if sum == nil || [3]string{attr(sum, "data-waiting"), attr(sum, "data-running"), attr(sum, "data-pollers")} != want {
			t.Errorf("%s summary %q, want waiting, running, pollers %v", q, describe(sum), want)
			continue
		}
		if q == jobs.GPUQueue && !strings.Contains(text(sum), "no worker polls gpu_queue") {
			t.Errorf("gpu_queue without a poller: %q", text(sum))
		}
	}
	rows := findAll(doc, func(n *html.Node) bool {
		return n.Data == "tr" && hasClass(n, "queued") && attr(n, "data-queue") == jobs.CPUQueue
	})
	if len(rows) != 10 {
		t.Fatalf("%d cpu_queue rows, want the first 10 of 12", len(rows))
	}
	for i, r := range rows {
		if attr(r, "data-job-id") != "job-cpu-"+strconv.Itoa(i+1) || num(t, attr(r, "data-start-in")) != float64(60*(i+1)) {
			t.Errorf("row %d: %q data-start-in %s", i, text(r), attr(r, "data-start-in"))
		}
	}
	if got := text(rows[1]); !strings.Contains(got, "in 2 min 0 s") {
		t.Errorf("second row %q, want its start in 2 min 0 s", got)
	}
	if !strings.Contains(text(byID(doc, "queue")), "and 2 more waiting") {
		t.Errorf("queue card %q does not say 2 more wait", text(byID(doc, "queue")))
	}
	gpu := find(doc, func(n *html.Node) bool { return hasClass(n, "queued") && attr(n, "data-queue") == jobs.GPUQueue })
	if gpu == nil || attr(gpu, "data-job-id") != "job-gpu-1" || !strings.Contains(text(gpu), "in 1 min 30 s") || !strings.Contains(text(gpu), "in 2 h 0 min") {
		t.Errorf("gpu_queue row %q, want job-gpu-1 starting in 1 min 30 s and ending in 2 h 0 min", describe(gpu))
	}

	off, _ := dashboardServer(t)
	doc, err = html.Parse(bytes.NewReader(headless(t, bin, off.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	if box := byID(doc, "queue"); box == nil || attr(box, "data-state") != "off" || !strings.Contains(text(box), "--scheduler-url") {
		t.Errorf("without a scheduler the queue card says %q", text(byID(doc, "queue")))
	}
}

// describe is n's text for a failure message, or says it is missing.
func describe(n *html.Node) string {
	if n == nil {
		return "(missing)"
	}
	return text(n)
}
