package jobclient

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gpujobs/gpujobs/workflows"
)

// WriteTable prints results as an aligned table, one row per job.
func WriteTable(w io.Writer, results []workflows.JobResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTYPE\tSTATUS\tWORKER\tDEVICE\tTIME\tRATE\tNOTE")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.JobID, r.JobType, r.Status, dash(r.WorkerType), dash(shorten(r.Device, 40)),
			seconds(r), rate(r), dash(note(r)))
	}
	return tw.Flush()
}

// FormatRate writes a result's headline rate, e.g. "178.3 GFLOP/s".
func FormatRate(r workflows.JobResult) string { return rate(r) }

func rate(r workflows.JobResult) string {
	v, unit := r.Rate()
	if unit == "" || r.Status != workflows.StatusCompleted {
		return "-"
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func seconds(r workflows.JobResult) string {
	if r.Status != workflows.StatusCompleted {
		return "-"
	}
	return FormatSeconds(r.ProcessingTime)
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

func note(r workflows.JobResult) string {
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

func dash(s string) string {
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
