package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workflows"
)

// withJobs validates job-ID arguments, dials Temporal and runs fn with the client.
func (a *app) withJobs(cmd *cobra.Command, ids []string, fn func(c client.Client) error) error {
	for _, id := range ids {
		if err := jobs.ValidateJobID(id); err != nil {
			return err
		}
	}
	c, err := a.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status <job-or-sweep-id>...",
		Short: "Show a job's state, device, progress and Web UI link (a sweep's: how many of its jobs are done)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJobs(cmd, args, func(c client.Client) error {
				for _, id := range args {
					if sweep, _ := jobclient.IsSweep(cmd.Context(), c, id); sweep {
						if err := a.sweepStatus(cmd, c, id, asJSON); err != nil {
							return err
						}
						continue
					}
					st, err := jobclient.GetStatus(cmd.Context(), c, id)
					if err != nil {
						return err
					}
					st = jobclient.WithPrediction(cmd.Context(), c, a.temporal.Namespace, st)
					if asJSON {
						writeJSON(cmd.OutOrStdout(), st)
					} else {
						a.printStatus(cmd.OutOrStdout(), st)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) printStatus(w io.Writer, st jobclient.Status) {
	fmt.Fprintf(w, "%s  %s  %s\n", st.JobID, st.JobType, st.State)
	sentTo := st.WorkerType
	if sentTo == "" {
		sentTo = "(not scheduled yet)"
	}
	fmt.Fprintf(w, "  device:    %s → %s\n", st.Device, sentTo)
	fmt.Fprintf(w, "  priority:  %d   tenant: %s\n", st.Priority, jobs.Dash(st.Tenant))
	if sg := st.Stage; sg != nil && sg.Stage != workflows.StageExecuting {
		line := stageText[sg.Stage]
		if line == "" {
			line = sg.Stage
		}
		fmt.Fprintf(w, "  stage:     %s since %s", line, sg.Since.Local().Format("15:04:05"))
		if sg.Detail != "" {
			fmt.Fprintf(w, ": %s", sg.Detail)
		}
		fmt.Fprintln(w)
	}
	if p := st.Prediction; p != nil {
		workers := fmt.Sprintf("%d worker(s)", p.Pollers)
		if p.Pollers == 0 {
			workers = "no worker polls it: the times assume one starts now"
		}
		fmt.Fprintf(w, "  queue:     position %d of %d waiting on %s (%d running, %s); predicted start %s, end %s\n",
			p.Position, p.Waiting, p.Queue, p.Running, workers, p.PredictedStart.Local().Format("15:04:05"), p.PredictedEnd.Local().Format("15:04:05"))
	}
	if p := st.Publish; p != nil {
		fmt.Fprintf(w, "  publish:   attempt %d, last failure: %s\n", p.Attempt, jobs.Dash(p.LastFailure))
	}
	if act := st.Activity; act != nil {
		line := fmt.Sprintf("%s on %s, attempt %d", act.State, jobs.Dash(act.Worker), act.Attempt)
		if act.State == "scheduled" {
			line = fmt.Sprintf("waiting for a %s worker, attempt %d", st.WorkerType, act.Attempt)
		}
		if p := act.Progress; p != nil {
			line += fmt.Sprintf(", step %d/%d", p.Iteration, p.Total)
			if p.Loss != nil {
				line += fmt.Sprintf(", loss %.4f", *p.Loss)
			}
		}
		fmt.Fprintf(w, "  kernel:    %s\n", line)
		if act.LastFailure != "" {
			fmt.Fprintf(w, "  last failure: %s\n", act.LastFailure)
		}
	}
	if r := st.Result; r != nil {
		fmt.Fprintf(w, "  result:    %s on %s (%s) in %.3fs, %s\n", r.Status, jobs.Dash(r.WorkerType), jobs.Dash(r.Device), r.ProcessingTime, jobs.FormatRate(*r))
		if r.Fallback != "" {
			fmt.Fprintf(w, "  fallback:  %s\n", r.Fallback)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error:     %s: %s\n", r.ErrorType, r.Error)
		}
	}
	fmt.Fprintf(w, "  web UI:    %s\n", a.temporal.WorkflowURL(st.JobID))
}

// predictions are the queue predictions of the running jobs listed, by job ID.
func predictions(cmd *cobra.Command, c client.Client, namespace string, list []jobclient.Summary) map[string]*jobclient.Prediction {
	out := map[string]*jobclient.Prediction{}
	var queues []string // those with a running job listed: one listing of the jobs serves them all
	for _, q := range []string{jobs.CPUQueue, jobs.GPUQueue} {
		if slices.ContainsFunc(list, func(j jobclient.Summary) bool {
			return j.State == jobclient.StateRunning && (j.WorkerType == jobs.QueueWorkerType(q) || j.WorkerType == "")
		}) {
			queues = append(queues, q)
		}
	}
	if len(queues) == 0 {
		return out
	}
	preds, err := jobclient.Predict(cmd.Context(), c, namespace, queues, time.Now())
	if err != nil {
		return out
	}
	for id, p := range preds {
		out[id] = &p
	}
	return out
}

// stageText says what a job's stage means, for status.
var stageText = map[string]string{
	workflows.StageScheduling:    "being scheduled",
	workflows.StageWaitingMemory: "waiting for memory on a worker (offered again after a pause)",
	workflows.StagePublishing:    "publishing its result",
	workflows.StageWaitingBroker: "waiting for RabbitMQ to take its result (retried until it does)",
	workflows.StageDone:          "ending",
}

func (a *app) listCmd() *cobra.Command {
	var (
		f      jobclient.Filter
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs from Temporal visibility, newest first",
		Example: `  starter list --status running
  starter list --type matrix_multiply --status failed --limit 10
  starter list --tenant team-a --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := f.Query(); err != nil {
				return err
			}
			if f.JobType != "" {
				if err := jobs.ValidateKindName(f.JobType); err != nil {
					return fmt.Errorf("--type: %w", err)
				}
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := jobclient.List(cmd.Context(), c, f)
			if err != nil {
				return err
			}
			if _, unknown := registry().Spec(f.JobType); len(list) == 0 && f.JobType != "" && unknown != nil {
				return fmt.Errorf("no jobs of type %q in this namespace: the built-in types are %s (a kind your workers add is listed once it has jobs)",
					f.JobType, strings.Join(registry().Names(), ", "))
			}
			out := cmd.OutOrStdout()
			preds := predictions(cmd, c, a.temporal.Namespace, list)
			if asJSON {
				for _, j := range list {
					writeJSON(out, struct {
						jobclient.Summary
						Prediction *jobclient.Prediction `json:"prediction,omitempty"`
					}{j, preds[j.JobID]})
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tTYPE\tSTATE\tDEVICE\tSENT TO\tPRIORITY\tTENANT\tSTARTED\tDURATION\tQUEUE")
			for _, j := range list {
				end := j.CloseTime
				if end.IsZero() {
					end = time.Now()
				}
				queue := "-"
				if p := preds[j.JobID]; p != nil && p.Position > 0 {
					queue = fmt.Sprintf("#%d, %s", p.Position, startsAt(p))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", j.JobID, j.JobType, j.State, jobs.Dash(j.Device), jobs.Dash(j.WorkerType),
					j.Priority, jobs.Dash(j.Tenant), j.StartTime.Local().Format("15:04:05"), end.Sub(j.StartTime).Round(time.Millisecond), queue)
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.State, "status", "", "running, completed, failed, canceled, terminated or timed_out")
	fs.StringVar(&f.JobType, "type", "", "job type")
	fs.StringVar(&f.Device, "device", "", "requested device policy: auto, gpu, gpu! or cpu")
	fs.StringVar(&f.Tenant, "tenant", "", "tenant")
	fs.IntVar(&f.Limit, "limit", 50, "at most this many jobs")
	fs.BoolVar(&asJSON, "json", false, "print JSON lines")
	return cmd
}

func (a *app) cancelCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel <job-or-sweep-id>...",
		Short: "Cancel running jobs (the kernel stops within one step and the result says canceled) or sweeps (with their running jobs)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJobs(cmd, args, func(c client.Client) error {
				for _, id := range args {
					if err := jobclient.Cancel(cmd.Context(), c, id); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "cancel requested: %s\n", id)
				}
				if !wait {
					return nil
				}
				ids, sweeps := splitSweeps(cmd.Context(), c, args)
				// A job that stopped did what cancel asked, and one that completed first is fine too.
				ok := []string{jobs.StatusCanceled, jobs.StatusCompleted}
				var failed error
				for _, id := range sweeps {
					res, err := jobclient.AwaitSweep(cmd.Context(), c, id)
					if err != nil {
						return err
					}
					failed = worse(failed, printSweep(cmd.OutOrStdout(), res, false, ok...))
				}
				if len(ids) == 0 {
					return failed
				}
				results, err := jobclient.AwaitAll(cmd.Context(), c, ids)
				if err != nil {
					return err
				}
				return worse(failed, a.printOutcome(cmd.OutOrStdout(), results, false, ok...))
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the jobs have stopped and print their results")
	return cmd
}

func (a *app) watchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch <job-id>...",
		Short: "Show a live progress bar for a job, or one for a batch of jobs",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJobs(cmd, args, func(c client.Client) error {
				results, err := watch(cmd.Context(), c, a.temporal.Namespace, args, cmd.ErrOrStderr(), true)
				if err != nil {
					return err
				}
				return a.printResults(cmd.OutOrStdout(), results, false)
			})
		},
	}
	return cmd
}

func (a *app) compareCmd() *cobra.Command {
	var (
		s      jobclient.Spec
		intv   = make([]int, len(paramFlags))
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "compare <job_type> [flags]",
		Short: "Run the same job on a GPU and on a CPU and print both times and the speedup",
		Example: `  starter compare matrix_multiply --size 4000 --iterations 10
  starter compare neural_network --epochs 3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.JobType = args[0]
			s.Set = setParams(cmd, intv)
			gpuReq, err := jobclient.Build(withDevice(s, jobs.DeviceRequireGPU), registry())
			if err != nil {
				return err
			}
			cpuReq, err := jobclient.Build(withDevice(s, jobs.DeviceCPU), registry())
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := jobclient.TemporalInspector{Client: c, Namespace: a.temporal.Namespace}.Inspect(cmd.Context(), jobs.GPUQueue)
			if err != nil {
				return fmt.Errorf("ask Temporal for GPU workers: %w", err)
			}
			if st.Pollers == 0 {
				return errors.New("no GPU worker is polling gpu_queue, so there is nothing to compare against: start one on a GPU machine (bin/worker-gpu, built by make build-gpu), or run the CPU side alone with starter submit --device cpu")
			}
			reqs := []jobs.Request{gpuReq, cpuReq}
			for i, err := range jobclient.SubmitAll(cmd.Context(), c, reqs) {
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "submitted %s on %s: %s\n", reqs[i].JobID, reqs[i].Device, a.temporal.WorkflowURL(reqs[i].JobID))
			}
			results, err := watch(cmd.Context(), c, a.temporal.Namespace, []string{gpuReq.JobID, cpuReq.JobID}, cmd.ErrOrStderr(), !asJSON)
			if err != nil {
				return err
			}
			return printComparison(cmd.OutOrStdout(), results[0], results[1], asJSON)
		},
	}
	addParamFlags(cmd, intv)
	cmd.Flags().StringVar(&s.Params, "params", "", "params as a JSON object")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the comparison as JSON")
	return cmd
}

func withDevice(s jobclient.Spec, device string) jobclient.Spec {
	s.Device = device
	return s
}

// Comparison is what compare prints with --json.
type Comparison struct {
	GPU jobs.Result `json:"gpu"`
	CPU jobs.Result `json:"cpu"`
	// Speedup is CPU processing time / GPU processing time (kernels alone).
	Speedup float64 `json:"speedup"`
	// EndToEndSpeedup also counts the GPU's host↔device copies and both setups.
	EndToEndSpeedup float64 `json:"end_to_end_speedup"`
}

func printComparison(w io.Writer, gpu, cpu jobs.Result, asJSON bool) error {
	if gpu.Status != jobs.StatusCompleted || cpu.Status != jobs.StatusCompleted {
		jobs.WriteTable(w, []jobs.Result{gpu, cpu}) //nolint:errcheck
		return errors.New("one of the runs did not complete: no speedup to report")
	}
	cmp := Comparison{GPU: gpu, CPU: cpu}
	if gpu.ProcessingTime > 0 {
		cmp.Speedup = cpu.ProcessingTime / gpu.ProcessingTime
	}
	if g := gpu.ProcessingTime + gpu.TransferTime + gpu.SetupTime; g > 0 {
		cmp.EndToEndSpeedup = (cpu.ProcessingTime + cpu.SetupTime) / g
	}
	if asJSON {
		writeJSON(w, cmp)
		return nil
	}
	if err := jobs.WriteTable(w, []jobs.Result{gpu, cpu}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nGPU speedup: %.1fx on the kernels (%.3fs vs %.3fs), %.1fx end to end with copies and setup\n",
		cmp.Speedup, cpu.ProcessingTime, gpu.ProcessingTime, cmp.EndToEndSpeedup)
	fmt.Fprintf(w, "GPU: %s   CPU: %s\n", gpu.Device, cpu.Device)
	return nil
}

// startsAt is a queued job's predicted start, short; without a worker polling its queue there is
// none to give.
func startsAt(p *jobs.Prediction) string {
	if p.Pollers == 0 {
		return "no worker polls " + p.Queue
	}
	return "starts ~" + p.PredictedStart.Local().Format("15:04:05")
}
