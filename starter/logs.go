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
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/monitorclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// After the job ended, --follow waits for the rest of its log: until every attempt's log is
// complete (its end is stored), else until the stream has been quiet for logQuiet, at most
// logDrainMax.
const (
	logQuiet    = 2 * time.Second
	logDrainMax = 30 * time.Second
)

func (a *app) logsCmd() *cobra.Command {
	var (
		api     string
		token   config.MonitorToken
		follow  bool
		attempt int
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "logs <job-id>",
		Short: "Print a job's log from the monitor: stdout lines to stdout, stderr lines to stderr",
		Long: `Print the lines a job printed, as the monitor stored them: the job's stdout lines on stdout,
its stderr lines on stderr, and gpujobs's own notices (a log cut at its bound, lines lost, a new
attempt) on stderr after "[gpujobs] ". --follow prints the lines as they arrive and exits when
the job has ended and its log is complete, with the job's exit code (0 completed, 2 failed,
3 canceled; the error is the last line on stderr); it asks Temporal whether the job still runs.`,
		Example: `  starter logs job-3f2a9c1b7e04
  starter logs job-3f2a9c1b7e04 --follow
  starter logs job-3f2a9c1b7e04 --attempt 2 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := jobs.ValidateJobID(id); err != nil {
				return err
			}
			if attempt < 0 || attempt > joblogs.MaxAttempt {
				return fmt.Errorf("invalid --attempt %d: allowed 1..%d (0: every attempt)", attempt, joblogs.MaxAttempt)
			}
			tok, err := token.Resolve()
			if err != nil {
				return err
			}
			p := &logPrinter{out: cmd.OutOrStdout(), errw: cmd.ErrOrStderr(), asJSON: asJSON, attempt: attempt}
			mc := monitorclient.New(api, tok)
			if !follow {
				return printLog(cmd.Context(), mc, id, attempt, p)
			}
			return a.followLog(cmd, mc, id, attempt, p)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&follow, "follow", "f", false, "keep printing lines as they arrive, until the job has ended")
	fs.IntVar(&attempt, "attempt", 0, "only this attempt's lines (default: every attempt, in order)")
	fs.StringVar(&api, "monitor", config.Env("MONITOR_API", "http://127.0.0.1:8000"), "base URL of the monitor (env MONITOR_API)")
	fs.BoolVar(&asJSON, "json", false, "print each line as JSON (job_id, attempt, seq, stream, time, text) on stdout")
	token.AddFlags(fs)
	return cmd
}

// logPrinter writes lines where they belong.
type logPrinter struct {
	out, errw io.Writer
	asJSON    bool
	attempt   int // the --attempt filter
	mu        sync.Mutex
	last      int // attempt of the last line printed
}

func (p *logPrinter) line(l joblogs.Line) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asJSON {
		b, _ := json.Marshal(l)
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	if p.attempt == 0 && l.Attempt != p.last && (p.last != 0 || l.Attempt > 1) {
		fmt.Fprintf(p.errw, "[gpujobs] attempt %d\n", l.Attempt)
	}
	p.last = l.Attempt
	switch l.Stream {
	case joblogs.StreamStdout:
		fmt.Fprintln(p.out, l.Text)
	case joblogs.StreamStderr:
		fmt.Fprintln(p.errw, l.Text)
	default:
		fmt.Fprintln(p.errw, "[gpujobs] "+l.Text)
	}
}

func logPath(id string, attempt int, stream bool) string {
	p := "/api/jobs/" + url.PathEscape(id) + "/logs"
	if stream {
		p += "/stream"
	}
	if attempt > 0 {
		p += "?attempt=" + strconv.Itoa(attempt)
	}
	return p
}

// printLog prints what the monitor holds of the job's log.
func printLog(ctx context.Context, mc monitorclient.Client, id string, attempt int, p *logPrinter) error {
	resp, err := mc.Get(ctx, logPath(id, attempt, false), nil)
	var se *monitorclient.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return errors.New(se.Reason)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l joblogs.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("the monitor's log of %s is not JSON lines: %w", id, err)
		}
		p.line(l)
	}
	return sc.Err()
}

// follower is what --follow has seen.
type follower struct {
	mu        sync.Mutex
	lastID    string       // the last event's id, for Last-Event-ID on a reconnect
	lastEvent time.Time    // when an event came last
	attempts  map[int]bool // attempts seen, and whether their end came
}

func (f *follower) complete(final int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.attempts) == 0 || (final > 0 && !f.hasAttempt(final)) {
		return false
	}
	for _, ended := range f.attempts {
		if !ended {
			return false
		}
	}
	return true
}

func (f *follower) hasAttempt(n int) bool {
	_, ok := f.attempts[n]
	return ok
}

// followLog streams the job's log until the job has ended (Temporal says so) and its log is
// complete; a monitor restart is survived by reconnecting after the last event seen.
func (a *app) followLog(cmd *cobra.Command, mc monitorclient.Client, id string, attempt int, p *logPrinter) error {
	c, err := a.dial(cmd)
	if err != nil {
		return fmt.Errorf("--follow asks Temporal when the job ends: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	type end struct {
		res jobs.Result
		err error
	}
	ended := make(chan end, 1)
	go func() {
		res, err := jobclient.Await(ctx, c, id)
		ended <- end{res, err}
	}()

	f := &follower{attempts: map[int]bool{}, lastEvent: time.Now()}
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	streamDone := make(chan error, 1)
	go func() { streamDone <- followEvents(streamCtx, mc, logPath(id, attempt, true), f, p, cmd.ErrOrStderr()) }()

	var result end
	select {
	case result = <-ended:
	case err := <-streamDone:
		return err // the monitor refused (a token, a bad request), or ctx ended
	}
	if cmd.Context().Err() != nil {
		return nil // interrupted
	}
	if result.err != nil {
		stopStream()
		<-streamDone
		return result.err
	}
	// The job ended; its last lines may still be on their way through the log queue.
	drainStart := time.Now()
	drained := func() bool {
		f.mu.Lock()
		quiet := time.Since(f.lastEvent)
		f.mu.Unlock()
		return f.complete(result.res.Attempt) || (quiet >= logQuiet && time.Since(drainStart) >= logQuiet)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !drained() {
		if time.Since(drainStart) > logDrainMax {
			fmt.Fprintf(cmd.ErrOrStderr(), "[gpujobs] %s ended; its log may be incomplete (still arriving after %s)\n", id, logDrainMax)
			break
		}
		select {
		case <-tick.C:
		case err := <-streamDone:
			return err
		}
	}
	stopStream()
	<-streamDone
	// The job's outcome is the exit code, and its error the last line, as for starter result.
	r := result.res
	err = outcome([]jobs.Result{r}, jobs.StatusCompleted)
	var ee *cli.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	msg := r.Status
	if r.Error != "" {
		msg += " (" + r.ErrorType + ": " + r.Error + ")"
	}
	return &cli.ExitError{Code: ee.Code, Err: fmt.Errorf("%s %s", id, msg)}
}

// followEvents reads the stream, reconnecting with backoff after the last event seen, until ctx
// ends (nil) or the monitor refuses the request.
func followEvents(ctx context.Context, mc monitorclient.Client, path string, f *follower, p *logPrinter, errw io.Writer) error {
	backoff := 250 * time.Millisecond
	for first := true; ; first = false {
		f.mu.Lock()
		last := f.lastID
		f.mu.Unlock()
		got, err := mc.Stream(ctx, path, last, func(ev monitorclient.Event) {
			f.mu.Lock()
			if ev.ID != "" {
				f.lastID = ev.ID
			}
			f.lastEvent = time.Now()
			f.mu.Unlock()
			switch ev.Name {
			case "line":
				var l joblogs.Line
				if json.Unmarshal(ev.Data, &l) == nil {
					f.mu.Lock()
					if !f.hasAttempt(l.Attempt) {
						f.attempts[l.Attempt] = false
					}
					f.mu.Unlock()
					p.line(l)
				}
			case "end":
				var e joblogs.End
				if json.Unmarshal(ev.Data, &e) == nil {
					f.mu.Lock()
					f.attempts[e.Attempt] = true
					f.mu.Unlock()
				}
			case "monitor_error":
				fmt.Fprintf(errw, "[gpujobs] monitor: %s\n", monitorclient.OneLine(ev.Data))
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		var se *monitorclient.StatusError
		if errors.Is(err, monitorclient.ErrUnauthorized) || (errors.As(err, &se) && se.Code < 500) {
			return err
		}
		if first && !got {
			fmt.Fprintf(errw, "[gpujobs] cannot reach the monitor at %s (%v); retrying\n", mc.API, err)
		}
		if got {
			backoff = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
