package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

func (a *app) sweepCmd() *cobra.Command {
	var (
		s       jobclient.SweepSpec
		lists   = make([]string, len(paramFlags))
		params  []string
		devices string
		wait    bool
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "sweep <job_type> [flags]",
		Short: "Run a grid of jobs (params × devices × repetitions) as one sweep, and its GPU/CPU speedup table",
		Long: `Run a parameter sweep: every combination of the listed param values, on each device,
--repeat times, as one SweepWorkflow whose children are the jobs (at most --parallel at once).
The Web UI shows the sweep as a parent workflow with its jobs as children; starter cancel
SWEEP-ID cancels the running jobs and starts no more. Each job's result carries the sweep's ID,
and the monitor's /api/sweeps, dashboard and report show the sweep's speedup curve.`,
		Example: `  starter sweep matrix_multiply --size 500,1000,2000,4000 --device cpu,gpu --wait
  starter sweep matrix_multiply --size 1000,2000 --iterations 5 --repeat 3 --parallel 2 --wait
  starter sweep matrix_multiply --size 2048 --param precision=fp32,tf32 --device gpu!
  starter result sweep-3f2a9c1b7e04     # the table of a sweep submitted without --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.JobType = args[0]
			if _, err := registry().Spec(s.JobType); err != nil {
				return err
			}
			s.Set = map[string]any{}
			for i, pf := range paramFlags {
				if !cmd.Flags().Changed(pf.flag) {
					continue
				}
				var vals []any
				for _, v := range strings.Split(lists[i], ",") {
					n, err := strconv.Atoi(strings.TrimSpace(v))
					if err != nil {
						return fmt.Errorf("invalid --%s %q: want comma-separated integers, e.g. 500,1000", pf.flag, lists[i])
					}
					vals = append(vals, n)
				}
				s.Axes = append(s.Axes, jobclient.Axis{Param: pf.field, Values: vals})
			}
			for _, p := range params {
				ax, err := parseAxis(p)
				if err != nil {
					return err
				}
				s.Axes = append(s.Axes, ax)
			}
			s.Devices = nil
			for _, d := range strings.Split(devices, ",") {
				s.Devices = append(s.Devices, strings.TrimSpace(d))
			}
			sweep, err := jobclient.BuildSweep(s, registry())
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := jobclient.SubmitSweep(cmd.Context(), c, sweep); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			url := a.temporal.WorkflowURL(sweep.SweepID)
			if !wait {
				if asJSON {
					writeJSON(out, map[string]any{"sweep_id": sweep.SweepID, "job_type": sweep.JobType, "jobs": len(sweep.Jobs), "url": url})
					return nil
				}
				fmt.Fprintf(out, "submitted sweep %s  %s  %d jobs, at most %d at once  %s\n", sweep.SweepID, sweep.JobType,
					len(sweep.Jobs), sweep.EffectiveParallel(), url)
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "sweep %s: %d jobs, at most %d at once: %s\n", sweep.SweepID, len(sweep.Jobs), sweep.EffectiveParallel(), url)
			res, err := awaitSweep(cmd.Context(), c, sweep.SweepID, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return printSweep(out, res, asJSON, jobs.StatusCompleted)
		},
	}
	fs := cmd.Flags()
	for i, pf := range paramFlags {
		fs.StringVar(&lists[i], pf.flag, "", pf.help+": one value or a comma-separated list")
	}
	fs.StringArrayVar(&params, "param", nil, "another param to sweep, as name=v1,v2,... (repeatable), e.g. precision=fp32,tf32")
	fs.StringVar(&s.Params, "params", "", "params that all the jobs share, as a JSON object")
	fs.StringVar(&devices, "device", "cpu,gpu", "device policies, comma-separated: each point runs on each (auto, gpu, gpu!, cpu)")
	fs.IntVar(&s.Repeat, "repeat", 1, "run each point this many times")
	fs.IntVar(&s.Parallel, "parallel", 0, fmt.Sprintf("at most this many jobs at once (default %d)", jobs.DefaultSweepParallel))
	fs.IntVar(&s.Priority, "priority", 0, "1 (dispatched first) .. 5 (last); default 3")
	fs.StringVar(&s.Tenant, "tenant", "", "tenant name for fair sharing of the workers")
	fs.DurationVar(&s.Timeout, "timeout", 0, "per-attempt timeout of each job (default: derived from its estimate)")
	fs.StringVar(&s.SweepID, "id", "", "sweep ID (default sweep-<12 hex>); its jobs are <id>-<n>")
	fs.BoolVar(&wait, "wait", false, "wait for the sweep and print its table")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

// parseAxis reads name=v1,v2,...: each value as JSON when it is (numbers, true, false), else as
// a string.
func parseAxis(p string) (jobclient.Axis, error) {
	name, list, ok := strings.Cut(p, "=")
	if !ok || name == "" || list == "" {
		return jobclient.Axis{}, fmt.Errorf("invalid --param %q: want name=v1,v2,...", p)
	}
	ax := jobclient.Axis{Param: name}
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil || dec.More() {
			x = v
		}
		ax.Values = append(ax.Values, x)
	}
	return ax, nil
}

// awaitSweep waits for the sweep, drawing its progress on a terminal.
func awaitSweep(ctx context.Context, c client.Client, sweepID string, w io.Writer) (jobs.SweepResult, error) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		go drawSweepProgress(ctx, c, sweepID, w)
	}
	return jobclient.AwaitSweep(ctx, c, sweepID)
}

func drawSweepProgress(ctx context.Context, c client.Client, sweepID string, w io.Writer) {
	var bar *progressbar.ProgressBar
	for {
		var p workflows.SweepProgress
		if v, err := c.QueryWorkflow(ctx, sweepID, "", workflows.SweepProgressQuery); err == nil && v.Get(&p) == nil && p.Total > 0 {
			if bar == nil {
				bar = progressbar.NewOptions(p.Total, progressbar.OptionSetWriter(w), progressbar.OptionSetWidth(30),
					progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
			}
			bar.Describe(fmt.Sprintf("%d/%d done, %d running, %d not completed", p.Finished, p.Total, p.Started-p.Finished, p.Failed))
			bar.Set(p.Finished) //nolint:errcheck // drawing only
		}
		select {
		case <-ctx.Done():
			if bar != nil {
				bar.Clear() //nolint:errcheck
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// SweepOutput is what sweep --wait --json and result --json print for a sweep.
type SweepOutput struct {
	Status  string            `json:"status"`
	Summary jobs.SweepSummary `json:"summary"`
	Results []jobs.Result     `json:"results"`
}

// printSweep prints the sweep's table (or JSON) and returns the outcome's error (see exitCode)
// when a job ended otherwise than as one of ok.
func printSweep(out io.Writer, res jobs.SweepResult, asJSON bool, ok ...string) error {
	sum := jobs.SummarizeSweep(res.SweepID, res.Results)
	if asJSON {
		writeJSON(out, SweepOutput{Status: res.Status, Summary: sum, Results: res.Results})
	} else {
		var buf bytes.Buffer
		if err := jobs.WriteSweepTable(&buf, sum); err != nil {
			return err
		}
		if res.Status == jobs.StatusCanceled {
			fmt.Fprintln(&buf, "the sweep was canceled")
		}
		if _, err := out.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	if err := outcome(res.Results, ok...); err != nil {
		return fmt.Errorf("sweep %s: %w", res.SweepID, err)
	}
	return nil
}

// splitSweeps tells the sweeps among ids from the jobs (an unknown ID counts as a job, whose
// lookup then says it does not exist).
func splitSweeps(ctx context.Context, c client.Client, ids []string) (jobIDs, sweepIDs []string) {
	for _, id := range ids {
		if sweep, _ := jobclient.IsSweep(ctx, c, id); sweep {
			sweepIDs = append(sweepIDs, id)
		} else {
			jobIDs = append(jobIDs, id)
		}
	}
	return jobIDs, sweepIDs
}

// worse returns the error with the higher exit code (see exitCode), a before b on a tie.
func worse(a, b error) error {
	code := func(err error) int {
		var ee *cli.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.Code
		}
		return exitError
	}
	if code(b) > code(a) {
		return b
	}
	return a
}

// SweepStatus is what status prints for a sweep with --json.
type SweepStatus struct {
	SweepID  string                   `json:"sweep_id"`
	State    string                   `json:"state"`
	Progress *workflows.SweepProgress `json:"progress,omitempty"` // while it runs
	Summary  *jobs.SweepSummary       `json:"summary,omitempty"`  // once it ended
}

func (a *app) sweepStatus(cmd *cobra.Command, c client.Client, id string, asJSON bool) error {
	ctx := cmd.Context()
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return fmt.Errorf("describe %s: %w", id, err)
	}
	st := SweepStatus{SweepID: id, State: jobclient.State(d.GetWorkflowExecutionInfo().GetStatus())}
	if st.State == jobclient.StateRunning {
		var p workflows.SweepProgress
		if v, err := c.QueryWorkflow(ctx, id, "", workflows.SweepProgressQuery); err == nil && v.Get(&p) == nil {
			st.Progress = &p
		}
	} else {
		res, err := jobclient.AwaitSweep(ctx, c, id)
		if err != nil {
			return err
		}
		sum := jobs.SummarizeSweep(id, res.Results)
		st.Summary = &sum
	}
	w := cmd.OutOrStdout()
	if asJSON {
		writeJSON(w, st)
		return nil
	}
	fmt.Fprintf(w, "%s  sweep  %s\n", id, st.State)
	switch {
	case st.Progress != nil:
		p := st.Progress
		fmt.Fprintf(w, "  jobs:      %d/%d done, %d running, %d not completed\n", p.Finished, p.Total, p.Started-p.Finished, p.Failed)
	case st.Summary != nil:
		s := st.Summary
		fmt.Fprintf(w, "  jobs:      %s, %d: %d completed, %d failed, %d canceled (starter result %s prints the table)\n",
			s.JobType, s.Results, s.Completed, s.Failed, s.Canceled, id)
	}
	fmt.Fprintf(w, "  web UI:    %s\n", a.temporal.WorkflowURL(id))
	return nil
}
