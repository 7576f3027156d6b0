package monitor

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// Report file names, inside the output directory.
const (
	ReportMarkdown = "report.md"
	ReportCSV      = "results.csv"
)

// Chart is one image of the report: its file name, its caption, and how to draw it. The charts
// are drawn by package charts (gonum/plot), which only the monitor-report command links, so
// monitor serve carries no plotting code.
type Chart struct {
	File, Caption string
	Draw          func(w io.Writer, s Stats, sp Speedups) error
}

// WriteReport writes report.md, results.csv and the charts of agg into dir, and returns the
// paths written. source names where the results came from, for the report's header.
func WriteReport(dir, source string, agg *Aggregator, charts ...Chart) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stats, speed := agg.Stats(), agg.Speedup()
	results, _ := agg.Results(Filter{Oldest: true})
	var written []string
	write := func(name string, fn func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	if err := write(ReportMarkdown, func(w io.Writer) error {
		return writeMarkdown(w, source, stats, speed, agg.Usage(time.Time{}, time.Time{}), charts)
	}); err != nil {
		return written, err
	}
	if err := write(ReportCSV, func(w io.Writer) error { return writeCSV(w, results) }); err != nil {
		return written, err
	}
	for _, c := range charts {
		if err := write(c.File, func(w io.Writer) error { return c.Draw(w, stats, speed) }); err != nil {
			return written, err
		}
	}
	return written, nil
}

func writeMarkdown(w io.Writer, source string, s Stats, sp Speedups, u Usage, charts []Chart) error {
	var b strings.Builder
	t := s.Totals
	fmt.Fprintf(&b, "# gpujobs results report\n\nGenerated %s from `%s`.\n\n", s.GeneratedAt.Format(time.RFC3339), source)
	b.WriteString("## Totals\n\n| results | completed | failed | canceled | GPU runs | CPU runs | fallbacks (CPU) |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d |\n\n", t.Results, t.Completed, t.Failed, t.Canceled, t.GPURuns, t.CPURuns, t.Fallbacks)
	if t.Duplicates > 0 || t.Malformed > 0 || t.Rejected > 0 || t.RejectedAtLoad > 0 {
		fmt.Fprintf(&b, "Not counted: %d duplicate deliveries, %d malformed messages and %d invalid results (dead-lettered), "+
			"%d lines of the results file that are not valid results (skipped).\n\n", t.Duplicates, t.Malformed, t.Rejected, t.RejectedAtLoad)
	}
	if tp := s.Throughput; tp.FirstStart != nil {
		fmt.Fprintf(&b, "Throughput: %.3f jobs/s overall (%s to %s), %.3f jobs/s in the minute before the report.\n\n",
			tp.Overall, tp.FirstStart.Format(time.RFC3339), tp.LastEnd.Format(time.RFC3339), tp.LastMinute)
	}

	b.WriteString("## Processing time by job type and worker\n\nSeconds of kernel time of completed jobs; p50/p95 interpolate between ranks.\n\n")
	b.WriteString("| job type | worker | results | completed | failed | fallbacks | avg s | min s | p50 s | p95 s | max s | mean rate | GPU util mean / peak | GPU memory peak |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, g := range s.Groups {
		times := "- | - | - | - | -"
		if pt := g.ProcessingTime; pt != nil {
			times = strings.Join([]string{secs(pt.Avg), secs(pt.Min), secs(pt.P50), secs(pt.P95), secs(pt.Max)}, " | ")
		}
		rate := "-"
		if g.Rate != nil {
			rate = fmt.Sprintf("%.2f %s", g.Rate.Mean, g.Rate.Unit)
		}
		util, mem := "-", "-"
		if t := g.GPUTelemetry; t != nil {
			util, mem = fmt.Sprintf("%.0f %% / %.0f %%", t.UtilizationMean, t.UtilizationPeak), jobs.FormatBytes(t.MemoryPeak)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s | %s | %s |\n", g.JobType, g.WorkerType,
			g.Results, g.Completed, g.Failed+g.Canceled, g.Fallbacks, times, rate, util, mem)
	}

	b.WriteString("\n## GPU speedup\n\nSpeedup = mean CPU time / mean GPU time of completed runs with the same job type and the same params " +
		"(fallback runs count as CPU runs). A job type's speedup is the geometric mean over its compared params.\n\n")
	b.WriteString("| job type | speedup | params compared | CPU runs | GPU runs | CPU mean s | GPU mean s | speedup |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, js := range sp.JobTypes {
		if len(js.Compared) == 0 {
			fmt.Fprintf(&b, "| %s | - | none ran on both (%d param sets on one device only) | | | | | |\n", js.JobType, js.Uncompared)
			continue
		}
		for i, c := range js.Compared {
			name, total := "", ""
			if i == 0 {
				name, total = js.JobType, fmt.Sprintf("**%.2f×**", js.Speedup)
			}
			fmt.Fprintf(&b, "| %s | %s | `%s` | %d | %d | %s | %s | %.2f× |\n", name, total, c.Params, c.CPURuns, c.GPURuns, secs(c.CPUMean), secs(c.GPUMean), c.Speedup)
		}
	}
	for _, c := range charts {
		fmt.Fprintf(&b, "\n![%s](%s)\n", c.Caption, c.File)
	}

	writeUsage(&b, u)
	b.WriteString("\n## Failures by error type\n\n")
	if len(s.Failures) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString("| error type | count |\n|---|---:|\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "| %s | %d |\n", f.ErrorType, f.Count)
		}
	}
	b.WriteString("\n## Fallbacks to CPU\n\n")
	if len(s.Fallbacks) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString("| job type | reason | count |\n|---|---|---:|\n")
		for _, f := range s.Fallbacks {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", f.JobType, strings.ReplaceAll(f.Reason, "|", `\|`), f.Count)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// opt and optInt write an optional figure, empty when absent.
func opt(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

func optInt(v int64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// CSVHeader lists the columns of results.csv.
var CSVHeader = []string{"job_id", "job_type", "status", "worker_type", "worker_id", "device", "fallback",
	"processing_time", "setup_time", "transfer_time", "queue_time", "rate", "rate_unit", "error_type", "error",
	"submit_time", "start_time", "end_time", "params", "gpu_utilization_mean", "gpu_utilization_peak", "gpu_memory_peak"}

func writeCSV(w io.Writer, results []jobs.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, r := range results {
		rate, unit := r.Rate()
		rateS := ""
		if unit != "" {
			rateS = f(rate)
		}
		row := []string{r.JobID, r.JobType, r.Status, r.WorkerType, r.WorkerID, r.Device, r.Fallback,
			f(r.ProcessingTime), f(r.SetupTime), f(r.TransferTime), f(r.QueueTime), rateS, unit, r.ErrorType, r.Error,
			ts(r.SubmitTime), ts(r.StartTime), ts(r.EndTime), string(CanonicalParams(r.Params)),
			opt(r.GPUUtilizationMean), opt(r.GPUUtilizationPeak), optInt(r.GPUMemoryPeak)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeUsage is the report's usage section: device-hours and jobs per tenant and job type.
func writeUsage(b *strings.Builder, u Usage) {
	b.WriteString("\n## Usage per tenant\n\nDevice-hours: processing is completed jobs' kernel time, occupancy the time a worker held its device for a job (any end).")
	if len(u.Prices) > 0 {
		fmt.Fprintf(b, " Cost prices the occupancy at %s per GPU-hour and %s per CPU-hour.", secs(u.Prices[jobs.WorkerTypeGPU]), secs(u.Prices[jobs.WorkerTypeCPU]))
	}
	b.WriteString("\n\n| tenant | job type | jobs | completed | failed | canceled | GPU h | CPU h | GPU occupancy h | CPU occupancy h | cost |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(tenant, jobType string, c UsageCounts) {
		fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", tenant, jobType, c.Jobs, c.Completed, c.Failed, c.Canceled,
			secs(c.GPUSeconds/3600), secs(c.CPUSeconds/3600), secs(c.GPUOccupancySeconds/3600), secs(c.CPUOccupancySeconds/3600), secs(c.Cost))
	}
	for _, t := range u.Tenants {
		name := t.Tenant
		if name == "" {
			name = "(none)"
		}
		row("**"+name+"**", "all", t.UsageCounts)
		for _, jt := range t.JobTypes {
			row("", jt.JobType, jt.UsageCounts)
		}
	}
	row("**total**", "", u.Total)
}
