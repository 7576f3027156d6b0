package monitor

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gpujobs/gpujobs/jobs"
)

// Prices are what a device-hour costs, by worker type (gpu, cpu), for the usage's cost.
type Prices map[string]float64

// AddPriceFlag registers --price (env MONITOR_PRICE) into p.
func AddPriceFlag(fs *pflag.FlagSet, p *Prices) {
	if env := os.Getenv("MONITOR_PRICE"); env != "" {
		if v, err := ParsePrices(env); err == nil {
			*p = v
		}
	}
	fs.Func("price", "price per device-hour for the usage's cost, e.g. gpu=2.50,cpu=0.04 (env MONITOR_PRICE)", func(s string) error {
		v, err := ParsePrices(s)
		if err == nil {
			*p = v
		}
		return err
	})
}

// ParsePrices reads "gpu=2.50,cpu=0.04".
func ParsePrices(s string) (Prices, error) {
	p := Prices{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		price, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || (k != jobs.WorkerTypeGPU && k != jobs.WorkerTypeCPU) || err != nil || price < 0 || price > 1e6 {
			return nil, fmt.Errorf("--price %q: want gpu=PRICE,cpu=PRICE per device-hour, prices 0..1000000", s)
		}
		p[k] = price
	}
	return p, nil
}

// Usage is what the tenants used in a time window, by the results that ended in it.
type Usage struct {
	Since   *time.Time    `json:"since,omitempty"`
	Until   *time.Time    `json:"until,omitempty"`
	Prices  Prices        `json:"prices,omitempty"`
	Tenants []TenantUsage `json:"tenants"`
	Total   UsageCounts   `json:"total"`
}

// TenantUsage is one tenant's usage, in all and by job type.
type TenantUsage struct {
	Tenant string `json:"tenant"` // "" for jobs submitted without one
	UsageCounts
	JobTypes []JobTypeUsage `json:"job_types"`
}

// JobTypeUsage is a tenant's usage of one job type.
type JobTypeUsage struct {
	JobType string `json:"job_type"`
	UsageCounts
}

// UsageCounts are device-seconds and job counts. Processing seconds are the completed jobs'
// kernel time (processing_time); occupancy seconds are the time a worker held its device for
// the job, from start_time to end_time, whatever its end. Cost prices the occupancy.
type UsageCounts struct {
	Jobs                int     `json:"jobs"`
	Completed           int     `json:"completed"`
	Failed              int     `json:"failed"`
	Canceled            int     `json:"canceled"`
	GPUSeconds          float64 `json:"gpu_seconds"`
	CPUSeconds          float64 `json:"cpu_seconds"`
	GPUOccupancySeconds float64 `json:"gpu_occupancy_seconds"`
	CPUOccupancySeconds float64 `json:"cpu_occupancy_seconds"`
	Cost                float64 `json:"cost,omitempty"`
}

// occupancy is how long r's worker held its device, seconds.
func occupancy(r jobs.Result) float64 {
	if r.WorkerType == "" || r.StartTime.IsZero() || r.EndTime.IsZero() || r.EndTime.Before(r.StartTime) {
		return 0
	}
	return r.EndTime.Sub(r.StartTime).Seconds()
}

func (u *UsageCounts) add(r jobs.Result, prices Prices) {
	u.Jobs++
	switch r.Status {
	case jobs.StatusCompleted:
		u.Completed++
	case jobs.StatusFailed:
		u.Failed++
	case jobs.StatusCanceled:
		u.Canceled++
	}
	proc := 0.0
	if r.Status == jobs.StatusCompleted {
		proc = r.ProcessingTime
	}
	occ := occupancy(r)
	switch r.WorkerType {
	case jobs.WorkerTypeGPU:
		u.GPUSeconds += proc
		u.GPUOccupancySeconds += occ
	case jobs.WorkerTypeCPU:
		u.CPUSeconds += proc
		u.CPUOccupancySeconds += occ
	}
	u.Cost += occ / 3600 * prices[r.WorkerType]
}

// SetPrices sets the prices that turn the usage's device-hours into cost.
func (a *Aggregator) SetPrices(p Prices) {
	a.mu.Lock()
	a.prices = p
	a.mu.Unlock()
}

// Usage sums the results whose end_time lies in [since, until) (zero bounds are open) per
// tenant and job type.
func (a *Aggregator) Usage(since, until time.Time) Usage {
	a.mu.RLock()
	defer a.mu.RUnlock()
	prices := a.prices
	u := Usage{Prices: prices}
	if !since.IsZero() {
		u.Since = &since
	}
	if !until.IsZero() {
		u.Until = &until
	}
	type key struct{ tenant, jobType string }
	byTenant := map[string]*TenantUsage{}
	byType := map[key]*JobTypeUsage{}
	for _, r := range a.results {
		end := endTime(r)
		if (!since.IsZero() && end.Before(since)) || (!until.IsZero() && !end.Before(until)) {
			continue
		}
		t := byTenant[r.Tenant]
		if t == nil {
			t = &TenantUsage{Tenant: r.Tenant}
			byTenant[r.Tenant] = t
		}
		jt := byType[key{r.Tenant, r.JobType}]
		if jt == nil {
			jt = &JobTypeUsage{JobType: r.JobType}
			byType[key{r.Tenant, r.JobType}] = jt
		}
		t.add(r, prices)
		jt.add(r, prices)
		u.Total.add(r, prices)
	}
	for k, jt := range byType {
		byTenant[k.tenant].JobTypes = append(byTenant[k.tenant].JobTypes, *jt)
	}
	for _, t := range byTenant {
		sort.Slice(t.JobTypes, func(i, j int) bool { return t.JobTypes[i].JobType < t.JobTypes[j].JobType })
		u.Tenants = append(u.Tenants, *t)
	}
	sort.Slice(u.Tenants, func(i, j int) bool { return u.Tenants[i].Tenant < u.Tenants[j].Tenant })
	if u.Tenants == nil {
		u.Tenants = []TenantUsage{}
	}
	return u
}

func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "since", "until") {
		return
	}
	var bounds [2]time.Time
	for i, name := range []string{"since", "until"} {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("invalid %s %q: want an RFC 3339 time such as 2026-12-01T00:00:00Z", name, v))
			return
		}
		bounds[i] = t
	}
	if !bounds[0].IsZero() && !bounds[1].IsZero() && !bounds[1].After(bounds[0]) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid window: until %s is not after since %s", bounds[1].Format(time.RFC3339), bounds[0].Format(time.RFC3339)))
		return
	}
	s.reply(w, http.StatusOK, s.agg.Usage(bounds[0], bounds[1]))
}
