package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/monitorclient"
	"github.com/gpujobs/gpujobs/jobs"
)

type tailOptions struct {
	api          string
	token        config.MonitorToken
	asJSON       bool
	follow       bool
	lines        int
	summaryEvery time.Duration
}

func tailCmd() *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print one line per result as the monitor stores it, with a running summary",
		Long: `Print one line per result (job, type, status, worker, device, time, rate) as a running
monitor (monitor serve) stores it, and a running summary line. tail reads the monitor's HTTP
stream; it does not consume the result queue, so it can run anywhere, any number of times.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := o.token.Resolve()
			if err != nil {
				return err
			}
			c := monitorclient.New(o.api, token)
			p := newPrinter(cmd.OutOrStdout(), o.asJSON, o.summaryEvery)
			if !o.follow {
				return printStored(cmd.Context(), c, p)
			}
			err = followStream(cmd.Context(), c, o.lines, p, cmd.ErrOrStderr())
			p.close()
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.api, "api", config.Env("MONITOR_API", "http://127.0.0.1:8000"), "base URL of the running monitor (env MONITOR_API)")
	o.token.AddFlags(fs)
	fs.BoolVar(&o.asJSON, "json", false, "print each result as a JSON line (and no summary)")
	fs.BoolVarP(&o.follow, "follow", "f", true, "keep printing results as they arrive; --follow=false prints what is stored and exits")
	fs.IntVarP(&o.lines, "lines", "n", 10, "with --follow, start with the last N stored results")
	fs.DurationVar(&o.summaryEvery, "summary-every", 5*time.Second, "when stdout is not a terminal, print the summary line at most this often (0: after every batch)")
	return cmd
}

// printer writes result lines and the running summary: on a terminal the summary is a status
// line kept under the results; elsewhere it is an ordinary line, printed at most every
// summaryEvery.
type printer struct {
	w            io.Writer
	asJSON, tty  bool
	summaryEvery time.Duration

	summary     string
	printedAt   time.Time
	printedLast string
}

func newPrinter(w io.Writer, asJSON bool, summaryEvery time.Duration) *printer {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &printer{w: w, asJSON: asJSON, tty: tty, summaryEvery: summaryEvery}
}

func (p *printer) result(r jobs.Result, raw []byte) {
	if p.asJSON {
		fmt.Fprintf(p.w, "%s\n", raw)
		return
	}
	if p.tty && p.summary != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintln(p.w, resultLine(r))
	if p.tty && p.summary != "" {
		fmt.Fprint(p.w, p.summary)
	}
}

func (p *printer) setSummary(s monitor.Summary) {
	if p.asJSON {
		return
	}
	p.summary = summaryLine(s)
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+p.summary)
		return
	}
	if p.summary != p.printedLast && time.Since(p.printedAt) >= p.summaryEvery {
		p.flushSummary()
	}
}

func (p *printer) flushSummary() {
	fmt.Fprintln(p.w, p.summary)
	p.printedAt, p.printedLast = time.Now(), p.summary
}

// close ends the output with the latest summary.
func (p *printer) close() {
	switch {
	case p.asJSON || p.summary == "":
	case p.tty:
		fmt.Fprintln(p.w)
	case p.summary != p.printedLast:
		p.flushSummary()
	}
}

func resultLine(r jobs.Result) string {
	wt := r.WorkerType
	if wt == "" {
		wt = "-"
	}
	took := "-"
	if r.Status == jobs.StatusCompleted {
		took = jobs.FormatSeconds(r.ProcessingTime)
	}
	line := fmt.Sprintf("%s  %-16s %-9s %-4s %-40.40s %9s  %s", r.JobID, r.JobType, r.Status, wt, r.Device, took, jobs.FormatRate(r))
	if r.GPUUtilizationMean != nil && r.GPUUtilizationPeak != nil {
		line += fmt.Sprintf("  GPU %.0f%%/%.0f%% %s", *r.GPUUtilizationMean, *r.GPUUtilizationPeak, jobs.FormatBytes(r.GPUMemoryPeak))
	}
	if r.Fallback != "" {
		line += "  (fallback: " + r.Fallback + ")"
	}
	if r.Error != "" {
		line += "  " + r.ErrorType + ": " + strings.Join(strings.Fields(r.Error), " ") // one line per result
	}
	return line
}

func summaryLine(s monitor.Summary) string {
	line := fmt.Sprintf("== %d results: %d completed, %d failed, %d canceled | GPU %d, CPU %d (%d fallbacks) | %.2f jobs/s last minute, %.2f overall",
		s.Results, s.Completed, s.Failed, s.Canceled, s.GPURuns, s.CPURuns, s.Fallbacks, s.ThroughputLastMinute, s.ThroughputOverall)
	if s.Duplicates > 0 || s.Malformed > 0 || s.Rejected > 0 {
		line += fmt.Sprintf(" | %d duplicates ignored, %d malformed and %d invalid dead-lettered", s.Duplicates, s.Malformed, s.Rejected)
	}
	if s.RejectedAtLoad > 0 {
		line += fmt.Sprintf(" | %d store lines skipped", s.RejectedAtLoad)
	}
	return line
}

func printStored(ctx context.Context, c monitorclient.Client, p *printer) error {
	var page monitor.ResultsPage
	if err := c.GetJSON(ctx, "/api/results?order=asc&limit=0", &page); err != nil {
		return err
	}
	for _, r := range page.Results {
		raw, _ := json.Marshal(r)
		p.result(r, raw)
	}
	var st monitor.Stats
	if err := c.GetJSON(ctx, "/api/stats", &st); err != nil {
		return err
	}
	p.summary = summaryLine(monitor.Summary{Totals: st.Totals, ThroughputOverall: st.Throughput.Overall, ThroughputLastMinute: st.Throughput.LastMinute})
	p.tty = false // a one-shot listing ends with a plain summary line
	p.close()
	return nil
}

// followStream reads the monitor's SSE stream until ctx ends. When the monitor goes away, it
// reconnects with backoff and resumes after the last result it printed (sequence numbers follow
// the store's order, which survives a monitor restart).
func followStream(ctx context.Context, c monitorclient.Client, replay int, p *printer, errw io.Writer) error {
	last := -1 // sequence number of the last result printed; -1: none yet
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		q := url.Values{}
		if last >= 0 {
			q.Set("after", strconv.Itoa(last))
		} else {
			q.Set("replay", strconv.Itoa(replay))
		}
		got, err := c.Stream(ctx, "/api/events?"+q.Encode(), "", func(ev monitorclient.Event) {
			switch ev.Name {
			case "result":
				var r jobs.Result
				if json.Unmarshal(ev.Data, &r) != nil {
					return
				}
				if id, err := strconv.Atoi(ev.ID); err == nil {
					last = id
				}
				p.result(r, ev.Data)
			case "summary":
				var s monitor.Summary
				if json.Unmarshal(ev.Data, &s) == nil {
					p.setSummary(s)
				}
			case "monitor_error": // the monitor could not encode an event
				if id, err := strconv.Atoi(ev.ID); err == nil {
					last = id
				}
				fmt.Fprintf(errw, "monitor %s: %s\n", c.API, monitorclient.OneLine(ev.Data))
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 && !got {
			if errors.Is(err, monitorclient.ErrUnauthorized) {
				return err
			}
			return fmt.Errorf("cannot follow the monitor at %s (is monitor serve running?): %w", c.API, err)
		}
		if got {
			backoff = 250 * time.Millisecond
		}
		fmt.Fprintf(errw, "monitor stream ended (%v); reconnecting in %s\n", err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
