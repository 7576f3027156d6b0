package jobs

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatBytes writes n in binary units, e.g. "3.0 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate computes units per second, or 0 when no time was measured.
func Rate(units float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return units / d.Seconds()
}

// FormatSeconds writes a duration in seconds with three significant digits, in s, ms or µs.
func FormatSeconds(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.3fs", s)
	case s >= 1e-3:
		return fmt.Sprintf("%.3gms", s*1e3)
	}
	return fmt.Sprintf("%.3gµs", s*1e6)
}

// FormatRate writes a completed result's headline rate, e.g. "178.3 GFLOP/s", or "-".
func FormatRate(r Result) string {
	v, unit := r.Rate()
	if unit == "" || r.Status != StatusCompleted {
		return "-"
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// WriteTable prints results as an aligned table, one row per job.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTYPE\tSTATUS\tWORKER\tDEVICE\tTIME\tRATE\tNOTE")
	for _, r := range results {
		took := "-"
		if r.Status == StatusCompleted {
			took = FormatSeconds(r.ProcessingTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.JobID, r.JobType, r.Status, Dash(r.WorkerType), Dash(shorten(r.Device, 40)),
			took, FormatRate(r), Dash(note(r)))
	}
	return tw.Flush()
}

func note(r Result) string {
	switch {
	case r.Error != "":
		return r.ErrorType + ": " + r.Error
	case r.Fallback != "":
		return "fallback: " + r.Fallback
	case r.Metrics["final_loss"] != 0:
		return fmt.Sprintf("loss %.3f → %.3f", r.Metrics["initial_loss"], r.Metrics["final_loss"])
	}
	return ""
}

// Dash returns s, or "-" when it is empty, for table cells.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimSpace(s[:n-1]) + "…"
}
