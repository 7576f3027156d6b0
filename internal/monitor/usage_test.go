package monitor

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/jobs"
)

// Usage per tenant equals a recomputation from the results themselves, in any window.
func TestUsageSumsPerTenantEqualARecomputation(t *testing.T) {
	results := fixtureResults(2000, 11, t0)
	tenants := []string{"", "team-a", "team-b", "lab"}
	for i := range results {
		results[i].Tenant = tenants[i%len(tenants)]
	}
	agg := NewAggregator(NewMetrics())
	agg.SetPrices(Prices{"gpu": 2.5, "cpu": 0.04})
	agg.Add(results...)
	since, until := results[300].EndTime, results[1700].EndTime
	u := agg.Usage(since, until)

	type want struct {
		jobs, done                     int
		gpu, cpu, gpuOcc, cpuOcc, cost float64
	}
	exp := map[string]*want{}
	for _, r := range results {
		if r.EndTime.Before(since) || !r.EndTime.Before(until) {
			continue
		}
		w := exp[r.Tenant]
		if w == nil {
			w = &want{}
			exp[r.Tenant] = w
		}
		w.jobs++
		occ := 0.0
		if r.WorkerType != "" && !r.StartTime.IsZero() {
			occ = r.EndTime.Sub(r.StartTime).Seconds()
		}
		proc := 0.0
		if r.Status == jobs.StatusCompleted {
			w.done++
			proc = r.ProcessingTime
		}
		switch r.WorkerType {
		case "gpu":
			w.gpu, w.gpuOcc, w.cost = w.gpu+proc, w.gpuOcc+occ, w.cost+occ/3600*2.5
		case "cpu":
			w.cpu, w.cpuOcc, w.cost = w.cpu+proc, w.cpuOcc+occ, w.cost+occ/3600*0.04
		}
	}
	if len(u.Tenants) != len(exp) {
		t.Fatalf("%d tenants, want %d", len(u.Tenants), len(exp))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	total := 0
	for _, tu := range u.Tenants {
		w := exp[tu.Tenant]
		c := tu.UsageCounts
		if c.Jobs != w.jobs || c.Completed != w.done || !near(c.GPUSeconds, w.gpu) || !near(c.CPUSeconds, w.cpu) ||
			!near(c.GPUOccupancySeconds, w.gpuOcc) || !near(c.CPUOccupancySeconds, w.cpuOcc) || !near(c.Cost, w.cost) {
			t.Errorf("tenant %q: %+v, recomputed %+v", tu.Tenant, c, *w)
		}
		sum := 0
		for _, jt := range tu.JobTypes {
			sum += jt.Jobs
		}
		if sum != c.Jobs {
			t.Errorf("tenant %q: job types sum to %d jobs, the tenant has %d", tu.Tenant, sum, c.Jobs)
		}
		total += c.Jobs
	}
	if total != u.Total.Jobs || total == 0 {
		t.Errorf("tenants sum to %d jobs, total %d", total, u.Total.Jobs)
	}

	srv := NewServer(agg, agg.metrics, nil, "x", zap.NewNop())
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/usage?since=" + since.Format(time.RFC3339Nano) + "&until=" + until.Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Usage
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Total.Jobs != u.Total.Jobs {
		t.Errorf("/api/usage: %v, %d jobs, want %d", err, got.Total.Jobs, u.Total.Jobs)
	}
	for _, bad := range []string{"?since=yesterday", "?until=2026-01-01T00:00:00Z&since=2026-02-01T00:00:00Z", "?tenant=a"} {
		r, _ := http.Get(ts.URL + "/api/usage" + bad)
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("/api/usage%s: %d, want 400", bad, r.StatusCode)
		}
		r.Body.Close()
	}
	m, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Body)
	m.Body.Close()
	if !strings.Contains(string(b), `gpujobs_tenant_device_seconds_total{device="gpu",job_type=`) || !strings.Contains(string(b), `tenant="team-a"`) {
		t.Error("/metrics lacks the per-tenant device-seconds")
	}
}

func TestParsePrices(t *testing.T) {
	if p, err := ParsePrices("gpu=2.50, cpu=0.04"); err != nil || p["gpu"] != 2.5 || p["cpu"] != 0.04 {
		t.Errorf("%v %v", p, err)
	}
	for _, bad := range []string{"tpu=1", "gpu", "gpu=-1", "gpu=x"} {
		if _, err := ParsePrices(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
