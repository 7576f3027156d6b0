package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

func (a *app) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Recurring jobs on Temporal Schedules: create, list, describe, pause, unpause, trigger, delete",
		Long: `Recurring jobs, run by Temporal Schedules (the Web UI's Schedules page shows them). Each run
is a job with the ID <name>-<scheduled time>, whose result goes to the result queue as any job's.`,
		Example: `  starter schedule create nightly-mm --cron '0 3 * * *' -- matrix_multiply --size 4000 --device gpu
  starter schedule create vec-10s --cron '@every 10s' --overlap buffer -- vector_addition --size 1000000 --cpu
  starter schedule list
  starter schedule trigger nightly-mm      # one run now
  starter schedule pause nightly-mm --note "GPU node in maintenance"`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.scheduleCreateCmd(), a.scheduleListCmd(), a.scheduleDescribeCmd())
	for _, action := range jobclient.ScheduleActions {
		cmd.AddCommand(a.scheduleControlCmd(action))
	}
	return cmd
}

func (a *app) withClient(cmd *cobra.Command, fn func(c client.Client) error) error {
	c, err := a.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func (a *app) scheduleCreateCmd() *cobra.Command {
	var s jobclient.ScheduleSpec
	cmd := &cobra.Command{
		Use:   "create <name> --cron EXPR [--overlap skip|buffer|buffer-all|allow] -- <job_type> [submit flags]",
		Short: "Create a schedule that submits the job after -- (submit's arguments) whenever the cron matches",
		Long: `Create a schedule that submits a job whenever --cron matches. After -- come the arguments of
starter submit (job type, params, --device, --priority, --tenant, ...), except --count, --id,
--wait and --json.

--cron takes 5 fields (minute hour day-of-month month day-of-week), 6 (and the year) or 7 (seconds
first), names such as @daily or @hourly, or "@every 30s"; times are UTC unless the expression
starts with CRON_TZ=<zone>. --overlap says what happens when a run is due while the last one is
still going: skip (the default: drop it), buffer (run it once the last ends), buffer-all (every
due run, in order), allow (run it now; the jobs queue for workers like any).`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return errors.New("usage: starter schedule create <name> --cron EXPR -- <job_type> [submit flags]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s.Name = args[0]
			if err := jobclient.ValidateScheduleName(s.Name); err != nil {
				return err
			}
			req, err := scheduledJob(args[1:])
			if err != nil {
				return err
			}
			s.Job = req
			return a.withClient(cmd, func(c client.Client) error {
				if err := jobclient.CreateSchedule(cmd.Context(), c, s); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created schedule %s  %s  %s  cron %q  %s\n", s.Name, req.JobType,
					jobs.Dash(req.EffectiveDevice()), s.Cron, a.temporal.ScheduleURL(s.Name))
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&s.Cron, "cron", "", "when to run: a cron expression, e.g. '0 3 * * *' (03:00 UTC daily) or '@every 10m'")
	fs.StringVar(&s.Overlap, "overlap", "skip", "when a run is due while the last still runs: "+strings.Join(jobclient.OverlapNames, ", "))
	fs.StringVar(&s.Note, "note", "", "a note shown with the schedule")
	fs.BoolVar(&s.Paused, "paused", false, "create it paused")
	cmd.MarkFlagRequired("cron") //nolint:errcheck // the flag exists
	return cmd
}

// scheduledJob builds the job of a schedule from submit's arguments.
func scheduledJob(args []string) (jobs.Request, error) {
	sub := &cobra.Command{Use: "submit", Args: cobra.MaximumNArgs(1)}
	f := addSubmitFlags(sub)
	if err := sub.ParseFlags(args); err != nil {
		return jobs.Request{}, fmt.Errorf("the job after --: %w", err)
	}
	if err := sub.Args(sub, sub.Flags().Args()); err != nil {
		return jobs.Request{}, fmt.Errorf("the job after --: %w", err)
	}
	for _, flag := range []string{"count", "id", "wait", "json"} {
		if sub.Flags().Changed(flag) {
			return jobs.Request{}, fmt.Errorf("the job after -- cannot take --%s: each run is one job, named <schedule>-<time>", flag)
		}
	}
	s, err := f.spec(sub, sub.Flags().Args())
	if err != nil {
		return jobs.Request{}, err
	}
	if _, err := registry().Spec(s.JobType); s.JobType != "" && err != nil {
		return jobs.Request{}, err // a schedule's runs are not watched: refuse a kind nobody checked now
	}
	return jobclient.Build(s, registry())
}

func (a *app) scheduleListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the schedules that submit jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(c client.Client) error {
				list, err := jobclient.ListSchedules(cmd.Context(), c)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					for _, s := range list {
						writeJSON(out, s)
					}
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SCHEDULE\tCRON\tOVERLAP\tSTATE\tLAST RUN\tNEXT RUN\tNOTE")
				for _, s := range list {
					last, next := "-", "-"
					if n := len(s.Recent); n > 0 {
						last = s.Recent[n-1].JobID
					}
					if len(s.Next) > 0 && !s.Paused {
						next = s.Next[0].Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, jobs.Dash(s.Cron), jobs.Dash(s.Overlap), state(s.Paused), last, next, jobs.Dash(s.Note))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	return cmd
}

func state(paused bool) string {
	if paused {
		return "paused"
	}
	return "active"
}

func (a *app) scheduleDescribeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe <name>",
		Short: "Show a schedule: its cron, its job, its runs and the next ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(c client.Client) error {
				s, err := jobclient.DescribeSchedule(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					writeJSON(cmd.OutOrStdout(), s)
					return nil
				}
				a.printSchedule(cmd.OutOrStdout(), s)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) printSchedule(w io.Writer, s jobclient.Schedule) {
	fmt.Fprintf(w, "%s  %s\n", s.Name, state(s.Paused))
	fmt.Fprintf(w, "  cron:      %s   overlap: %s\n", jobs.Dash(s.Cron), jobs.Dash(s.Overlap))
	if j := s.Job; j != nil {
		fmt.Fprintf(w, "  job:       %s %s  device %s  priority %d  tenant %s\n", j.JobType, j.Params, j.EffectiveDevice(), j.EffectivePriority(), jobs.Dash(j.Tenant))
	}
	fmt.Fprintf(w, "  runs:      %d started, %d skipped (overlap)\n", s.Runs, s.SkippedOverlap)
	if len(s.Running) > 0 {
		fmt.Fprintf(w, "  running:   %s\n", strings.Join(s.Running, ", "))
	}
	for i, r := range s.Recent {
		label := "  recent:   "
		if i > 0 {
			label = "            "
		}
		fmt.Fprintf(w, "%s %s  (due %s)\n", label, r.JobID, r.ScheduledFor.Local().Format(time.DateTime))
	}
	if !s.Paused {
		var next []string
		for _, t := range s.Next[:min(3, len(s.Next))] {
			next = append(next, t.Local().Format(time.DateTime))
		}
		fmt.Fprintf(w, "  next:      %s\n", jobs.Dash(strings.Join(next, ", ")))
	}
	if s.Note != "" {
		fmt.Fprintf(w, "  note:      %s\n", s.Note)
	}
	fmt.Fprintf(w, "  web UI:    %s\n", a.temporal.ScheduleURL(s.Name))
}

func (a *app) scheduleControlCmd(action string) *cobra.Command {
	short := map[string]string{
		jobclient.SchedulePause:   "Pause a schedule: no runs until unpause (trigger still starts one)",
		jobclient.ScheduleUnpause: "Unpause a schedule",
		jobclient.ScheduleTrigger: "Start one run of a schedule now",
		jobclient.ScheduleDelete:  "Delete a schedule (the jobs it started are left alone)",
	}[action]
	done := map[string]string{jobclient.SchedulePause: "paused", jobclient.ScheduleUnpause: "unpaused",
		jobclient.ScheduleTrigger: "triggered", jobclient.ScheduleDelete: "deleted"}[action]
	var note string
	cmd := &cobra.Command{
		Use:   action + " <name>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(c client.Client) error {
				if err := jobclient.ControlSchedule(cmd.Context(), c, args[0], action, note); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s schedule %s\n", done, args[0])
				return nil
			})
		},
	}
	if action == jobclient.SchedulePause || action == jobclient.ScheduleUnpause {
		cmd.Flags().StringVar(&note, "note", "", "why, shown with the schedule")
	}
	return cmd
}
