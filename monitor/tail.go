package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/jobs"
)

type tailOptions struct {
	api          string
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
			o.api = strings.TrimRight(o.api, "/")
			p := newPrinter(cmd.OutOrStdout(), o.asJSON, o.summaryEvery)
			if !o.follow {
				return printStored(cmd.Context(), o.api, p)
			}
			err := followStream(cmd.Context(), o.api, o.lines, p, cmd.ErrOrStderr())
			p.close()
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.api, "api", config.Env("MONITOR_API", "http://127.0.0.1:8000"), "base URL of the running monitor (env MONITOR_API)")
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

func printStored(ctx context.Context, api string, p *printer) error {
	var page monitor.ResultsPage
	if err := getJSON(ctx, api+"/api/results?order=asc&limit=0", &page); err != nil {
		return err
	}
	for _, r := range page.Results {
		raw, _ := json.Marshal(r)
		p.result(r, raw)
	}
	var st monitor.Stats
	if err := getJSON(ctx, api+"/api/stats", &st); err != nil {
		return err
	}
	p.summary = summaryLine(monitor.Summary{Totals: st.Totals, ThroughputOverall: st.Throughput.Overall, ThroughputLastMinute: st.Throughput.LastMinute})
	p.tty = false // a one-shot listing ends with a plain summary line
	p.close()
	return nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the monitor (is monitor serve running?): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, oneLine(b))
	}
	// Keep the start of the body, to say what came back when it is not the JSON expected.
	head := &prefixWriter{max: 200}
	if err := json.NewDecoder(io.TeeReader(resp.Body, head)).Decode(v); err != nil {
		got := "an empty body"
		if len(head.b) > 0 {
			got = fmt.Sprintf("%q", oneLine(head.b))
		}
		return fmt.Errorf("GET %s: %s, but the body is not the JSON expected (%v): got %s", u, resp.Status, err, got)
	}
	return nil
}

// prefixWriter keeps the first max bytes written to it.
type prefixWriter struct {
	b   []byte
	max int
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if n := p.max - len(p.b); n > 0 {
		p.b = append(p.b, b[:min(n, len(b))]...)
	}
	return len(b), nil
}

// oneLine joins a body's lines, for a one-line error.
func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// followStream reads the monitor's SSE stream until ctx ends. When the monitor goes away, it
// reconnects with backoff and resumes after the last result it printed (sequence numbers follow
// the store's order, which survives a monitor restart).
func followStream(ctx context.Context, api string, replay int, p *printer, errw io.Writer) error {
	last := -1 // sequence number of the last result printed; -1: none yet
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		q := url.Values{}
		if last >= 0 {
			q.Set("after", strconv.Itoa(last))
		} else {
			q.Set("replay", strconv.Itoa(replay))
		}
		got, err := readStream(ctx, api+"/api/events?"+q.Encode(), func(ev sseEvent) {
			switch ev.name {
			case "result":
				var r jobs.Result
				if json.Unmarshal(ev.data, &r) != nil {
					return
				}
				if id, err := strconv.Atoi(ev.id); err == nil {
					last = id
				}
				p.result(r, ev.data)
			case "summary":
				var s monitor.Summary
				if json.Unmarshal(ev.data, &s) == nil {
					p.setSummary(s)
				}
			case "monitor_error": // the monitor could not encode an event
				if id, err := strconv.Atoi(ev.id); err == nil {
					last = id
				}
				fmt.Fprintf(errw, "monitor %s: %s\n", api, oneLine(ev.data))
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 && !got {
			return fmt.Errorf("cannot follow the monitor at %s (is monitor serve running?): %w", api, err)
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

type sseEvent struct {
	id, name string
	data     []byte
}

// readStream reads one SSE connection; connected says whether the server answered 200.
func readStream(ctx context.Context, u string, fn func(sseEvent)) (connected bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || len(ev.data) > 0 {
				fn(ev)
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id = value
			case "event":
				ev.name = value
			case "data":
				if len(ev.data) > 0 {
					ev.data = append(ev.data, '\n')
				}
				ev.data = append(ev.data, value...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, errors.New("stream closed")
}
