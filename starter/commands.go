package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/logging"
	"github.com/gpujobs/gpujobs/internal/temporalx"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// app holds what every subcommand shares: where Temporal is, how to log.
type app struct {
	temporal config.Temporal
	log      config.Log
}

func (a *app) dial(cmd *cobra.Command) (client.Client, error) {
	logger, err := logging.New(a.log)
	if err != nil {
		return nil, err
	}
	return temporalx.Dial(cmd.Context(), a.temporal, logger)
}

func newRoot() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:           "starter",
		Short:         "Submit gpujobs jobs and read their results",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	a.temporal.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&a.log.Format, "log-format", config.Env("LOG_FORMAT", "console"), "console or json (env LOG_FORMAT)")
	root.PersistentFlags().StringVar(&a.log.Level, "log-level", config.Env("LOG_LEVEL", "warn"), "SDK log level: debug, info, warn or error (env LOG_LEVEL)")
	root.AddCommand(a.submitCmd(), a.resultCmd(), a.statusCmd(), a.listCmd(), a.cancelCmd(), a.watchCmd(), a.compareCmd(),
		a.sweepCmd(), a.scheduleCmd(), artifactsCmd(), downloadCmd(), a.logsCmd())
	return root
}

// paramFlags are the seed's per-param flags; each sets the param of the same name.
var paramFlags = []struct{ flag, field, help string }{
	{"size", "size", "matrix size N (matrix_multiply) or vector length (vector_addition)"},
	{"iterations", "iterations", "timed iterations"},
	{"epochs", "epochs", "training epochs (neural_network)"},
	{"batch-size", "batch_size", "batch size (neural_network, image_processing)"},
	{"image-size", "image_size", "image height and width (image_processing)"},
}

// submitFlags are submit's flags; schedule create reads the same after its "--".
type submitFlags struct {
	s          jobclient.Spec
	cpu        bool
	requireGPU bool
	count      int
	wait       bool
	asJSON     bool
	intVals    []int
	kv         []string
}

func addSubmitFlags(cmd *cobra.Command) *submitFlags {
	f := &submitFlags{intVals: make([]int, len(paramFlags))}
	addParamFlags(cmd, f.intVals)
	fs := cmd.Flags()
	fs.StringArrayVar(&f.kv, "param", nil, "set one param, key=value (repeatable); the value is read as JSON when it is JSON, else as a string")
	fs.StringVar(&f.s.Params, "params", "", `params as a JSON object, e.g. '{"size": 1000, "iterations": 10}' (the seed's job JSON with job_type and prefer_gpu is accepted)`)
	fs.StringVar(&f.s.Device, "device", "", "auto (default: whichever device is expected to finish first), gpu (prefer a GPU, fall back to CPU, labelled), gpu! (GPU only) or cpu")
	fs.BoolVar(&f.cpu, "cpu", false, "run on a CPU worker (same as --device cpu)")
	fs.BoolVar(&f.requireGPU, "require-gpu", false, "run on a GPU worker only, waiting for one (same as --device gpu!)")
	fs.IntVar(&f.s.Priority, "priority", 0, "1 (dispatched first) .. 5 (last); default 3")
	fs.StringVar(&f.s.Tenant, "tenant", "", "tenant name for fair sharing of the workers")
	fs.DurationVar(&f.s.Timeout, "timeout", 0, "per-attempt timeout (default: derived from the job's estimate)")
	fs.StringVar(&f.s.JobID, "id", "", "job ID (default a fresh job-<12 hex>); resubmitting the same ID is rejected, so retries are safe")
	fs.IntVar(&f.count, "count", 1, "submit N identical jobs")
	fs.BoolVar(&f.wait, "wait", false, "wait for the jobs and print their results")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON lines instead of text")
	return f
}

// spec is the job that the flags and the positional job type describe.
func (f *submitFlags) spec(cmd *cobra.Command, args []string) (jobclient.Spec, error) {
	s := f.s
	if len(args) == 1 {
		s.JobType = args[0]
	}
	for _, short := range []struct {
		set          bool
		flag, device string
	}{{f.cpu, "--cpu", jobs.DeviceCPU}, {f.requireGPU, "--require-gpu", jobs.DeviceRequireGPU}} {
		if !short.set {
			continue
		}
		if s.Device != "" && s.Device != short.device {
			return s, fmt.Errorf("%s and --device %s contradict each other", short.flag, s.Device)
		}
		s.Device = short.device
	}
	if err := jobs.ValidateDevice(s.Device); err != nil {
		return s, err
	}
	if f.count < 1 || f.count > 10000 {
		return s, fmt.Errorf("invalid --count %d: allowed 1..10000", f.count)
	}
	if f.count > 1 && s.JobID != "" {
		return s, errors.New("--id names one job: it cannot be combined with --count")
	}
	if cmd.Flags().Changed("priority") && (s.Priority < jobs.MinPriority || s.Priority > jobs.MaxPriority) {
		return s, fmt.Errorf("invalid --priority %d: allowed %d (dispatched first) .. %d (last)", s.Priority, jobs.MinPriority, jobs.MaxPriority)
	}
	s.Set = setParams(cmd, f.intVals)
	if err := keyValues(f.kv, s.Set); err != nil {
		return s, err
	}
	return s, nil
}

func (a *app) submitCmd() *cobra.Command {
	var (
		f  *submitFlags
		cf *commandFlags
	)
	kinds := registry().Names()
	cmd := &cobra.Command{
		Use:   "submit <job_type> [flags]",
		Short: "Submit jobs: " + strings.Join(kinds, ", ") + ", or a kind your cluster's workers add",
		Example: `  starter submit matrix_multiply --size 2000 --iterations 5 --wait
  starter submit neural_network --epochs 3 --device cpu
  starter submit --params '{"job_type": "vector_addition", "size": 1000000, "prefer_gpu": true}'
  starter submit image_processing --count 4 --wait --json
  starter submit monte_carlo_pi --param samples=50000000 --param seed=7 --wait
  starter submit command --gpus 1 --output '*.pt' -- python3 train.py --epochs 3
  starter submit command --memory 4GiB --input job-3f2a9c1b7e04 -- sh -c 'wc -l "$GPUJOBS_INPUT_DIR"/*/*'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				args = args[:dash]
			}
			return cobra.MaximumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var argv []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				args, argv = args[:dash], args[dash:]
			}
			s, err := f.spec(cmd, args)
			if err != nil {
				return err
			}
			if s.JobType == builtin.CommandKind {
				if err := cf.set(cmd, argv, s.Set); err != nil {
					return err
				}
				if s.Timeout > 0 { // for a command, --timeout bounds the program's run
					s.Set["timeout"] = s.Timeout.String()
					s.Timeout = 0
				}
			} else if len(argv) > 0 {
				return fmt.Errorf("a program after -- is for command jobs: starter submit command -- %s", strings.Join(argv, " "))
			} else if flag := cf.usedWithoutCommand(cmd); flag != "" {
				return fmt.Errorf("%s is a flag of command jobs, not of %s", flag, s.JobType)
			}
			return a.submit(cmd, s, f.count, f.wait, f.asJSON)
		},
	}
	f = addSubmitFlags(cmd)
	cf = addCommandFlags(cmd)
	return cmd
}

// addParamFlags registers the seed's per-param flags, storing into vals.
func addParamFlags(cmd *cobra.Command, vals []int) {
	for i, pf := range paramFlags {
		cmd.Flags().IntVar(&vals[i], pf.flag, 0, pf.help)
	}
}

// setParams returns the params the user set with per-param flags.
func setParams(cmd *cobra.Command, vals []int) map[string]any {
	set := map[string]any{}
	for i, pf := range paramFlags {
		if cmd.Flags().Changed(pf.flag) {
			set[pf.field] = vals[i]
		}
	}
	return set
}

func registry() *jobs.Kinds { return builtin.Kinds() }

func (a *app) submit(cmd *cobra.Command, s jobclient.Spec, count int, wait, asJSON bool) error {
	reqs := make([]jobs.Request, count)
	for i := range reqs {
		req, err := jobclient.Build(s, registry())
		if err != nil {
			return err
		}
		reqs[i] = req
	}
	// A kind the starter was not built with is validated by the cluster's scheduler, which knows
	// it (or says it does not); the starter waits for that verdict.
	_, known := registry().Spec(reqs[0].JobType)
	c, err := a.dial(cmd)
	if err != nil {
		if known != nil {
			return fmt.Errorf("%w, and the cluster could not be asked for others: %w", known, err)
		}
		return err
	}
	defer c.Close()
	out := cmd.OutOrStdout()
	var accepted []string
	var failed error
	for i, err := range jobclient.SubmitAll(cmd.Context(), c, reqs) {
		r := reqs[i]
		if err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		accepted = append(accepted, r.JobID)
		if asJSON {
			if !wait {
				writeJSON(out, map[string]string{"job_id": r.JobID, "job_type": r.JobType, "device": r.EffectiveDevice(), "url": a.temporal.WorkflowURL(r.JobID)})
			}
			continue
		}
		fmt.Fprintf(out, "submitted %s  %s  device=%s  %s\n", r.JobID, r.JobType, r.EffectiveDevice(), a.temporal.WorkflowURL(r.JobID))
	}
	if failed != nil {
		return failed
	}
	if known != nil {
		if err := jobclient.Verdict(cmd.Context(), c, accepted[0], verdictWait); err != nil {
			if errors.Is(err, jobclient.ErrNoVerdict) {
				fmt.Fprintf(cmd.ErrOrStderr(), "starter: %s submitted, not validated yet: no scheduler worker took it within %s (is one running?)\n", accepted[0], verdictWait)
			} else {
				return err
			}
		}
	}
	if !wait {
		return nil
	}
	if len(accepted) > 1 && !asJSON {
		results, err := watch(cmd.Context(), c, a.temporal.Namespace, accepted, cmd.ErrOrStderr(), true)
		if err != nil {
			return err
		}
		return a.printResults(out, results, asJSON)
	}
	return a.awaitAll(cmd, c, accepted, asJSON)
}

// awaitAll waits for every job, prints the results and fails if any job did not complete.
func (a *app) awaitAll(cmd *cobra.Command, c client.Client, ids []string, asJSON bool) error {
	results, err := jobclient.AwaitAll(cmd.Context(), c, ids)
	if err != nil {
		return err
	}
	return a.printResults(cmd.OutOrStdout(), results, asJSON)
}

func (a *app) printResults(out io.Writer, results []jobs.Result, asJSON bool) error {
	return a.printOutcome(out, results, asJSON, jobs.StatusCompleted)
}

// printOutcome prints the results and returns the outcome's error (see exitCode) when a job
// ended otherwise than as ok.
func (a *app) printOutcome(out io.Writer, results []jobs.Result, asJSON bool, ok ...string) error {
	if asJSON {
		for _, r := range results {
			writeJSON(out, r)
		}
	} else if err := jobs.WriteTable(out, results); err != nil {
		return err
	}
	return outcome(results, ok...)
}

// timedOut says whether err is result --timeout's deadline (which may reach the server first and
// come back as its error), not the user's interrupt.
func timedOut(ctx, parent context.Context, err error) bool {
	return err != nil && parent.Err() == nil &&
		(ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || status.Code(errors.Unwrap(err)) == codes.DeadlineExceeded)
}

func (a *app) resultCmd() *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "result <job-or-sweep-id>...",
		Short: "Wait for jobs and print their results (a sweep's as its table)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withJobs(cmd, args, func(c client.Client) error {
				ctx := cmd.Context()
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				ids, sweeps := splitSweeps(ctx, c, args)
				var failed error
				for _, id := range sweeps {
					res, err := jobclient.AwaitSweep(ctx, c, id)
					if timedOut(ctx, cmd.Context(), err) {
						return stillRunning([]string{id}, nil, timeout)
					}
					if err != nil {
						return err
					}
					failed = worse(failed, printSweep(cmd.OutOrStdout(), res, asJSON, jobs.StatusCompleted))
				}
				if len(ids) == 0 {
					return failed
				}
				results, err := jobclient.AwaitAll(ctx, c, ids)
				if timedOut(ctx, cmd.Context(), err) {
					return stillRunning(ids, results, timeout)
				}
				if err != nil {
					return err
				}
				return worse(failed, a.printResults(cmd.OutOrStdout(), results, asJSON))
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (default: wait until the job ends)")
	return cmd
}

func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}
