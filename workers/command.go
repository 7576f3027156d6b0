package workers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/internal/bridge"
	"github.com/gpujobs/gpujobs/internal/command"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/hostmem"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/logging"
	"github.com/gpujobs/gpujobs/internal/temporalx"
)

// Command is the worker command line of a binary built with c: bin/worker and bin/worker-gpu
// are two such binaries, and a program that adds job kinds is a third.
func Command(c Config) *cobra.Command {
	name, defaultRole := c.Name, c.DefaultRole
	if name == "" {
		name = "worker"
	}
	if defaultRole == "" {
		defaultRole = RoleCPU
	}
	var (
		o   Options
		tc  config.Temporal
		lc  config.Log
		hbt time.Duration
	)
	cmd := &cobra.Command{
		Use:   name,
		Short: "Run a gpujobs worker: scheduler (workflows), cpu or gpu (kernels), bridge (RabbitMQ jobs)",
		Long: `Run a gpujobs worker in one role:
  scheduler  runs JobWorkflow and its local activities on job_queue, publishes results to RabbitMQ
  cpu        runs jobs' kernels on this machine's CPU, from cpu_queue
  gpu        runs jobs' kernels on this machine's GPUs, from gpu_queue (the worker-gpu binary)
  bridge     starts the jobs that the original system's clients publish to RabbitMQ's job_queue`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Scheduler.HeartbeatTimeout = hbt
			o.Namespace = tc.Namespace
			logger, err := logging.New(lc)
			if err != nil {
				return err
			}
			defer logger.Sync() //nolint:errcheck // stderr
			logger = logger.With(zap.String("worker_id", o.WorkerID), zap.String("role", o.Role))
			return start(cmd.Context(), c, o, tc, logger)
		},
	}
	hostname, _ := os.Hostname()
	fs := cmd.Flags()
	fs.StringVar(&o.Role, "role", config.Env("WORKER_TYPE", defaultRole), "scheduler, cpu, gpu or bridge (env WORKER_TYPE)")
	fs.StringVar(&o.WorkerID, "id", config.Env("WORKER_ID", fmt.Sprintf("%s-%d", hostname, os.Getpid())), "worker identity shown in results and the Web UI (env WORKER_ID)")
	fs.IntVar(&o.Concurrency, "concurrency", config.EnvInt("WORKER_CONCURRENCY", 0), "jobs run at once (env WORKER_CONCURRENCY; default 1 for cpu, GPUs × --jobs-per-gpu for gpu)")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", config.EnvDuration("WORKER_STOP_TIMEOUT", 30*time.Second), "on SIGTERM, how long running jobs may finish before they are handed back (env WORKER_STOP_TIMEOUT)")
	fs.DurationVar(&hbt, "heartbeat-timeout", config.EnvDuration("HEARTBEAT_TIMEOUT", 10*time.Second), "scheduler: a worker silent this long is presumed dead and its job retried elsewhere (env HEARTBEAT_TIMEOUT)")
	fs.DurationVar(&o.Scheduler.PreferGPUWait, "prefer-gpu-wait", config.EnvDuration("PREFER_GPU_WAIT", 2*time.Minute), "scheduler: how long a GPU-preferring job waits for a GPU worker before it falls back to CPU (env PREFER_GPU_WAIT)")
	fs.DurationVar(&o.Scheduler.RequireGPUWait, "require-gpu-wait", config.EnvDuration("REQUIRE_GPU_WAIT", 10*time.Minute), "scheduler: how long a gpu! job waits for a GPU worker before it fails (env REQUIRE_GPU_WAIT)")
	fs.StringVar(&o.HealthAddr, "health-addr", config.Env("HEALTH_ADDR", ""), "serve /healthz and /readyz on this address, e.g. :8081 (env HEALTH_ADDR; default off)")
	o.MemoryLimit = config.Bytes(config.EnvBytes("WORKER_MEMORY_LIMIT", 0))
	fs.Var(&o.MemoryLimit, "memory-limit", "cpu: the most memory one job may use, e.g. 8GiB (env WORKER_MEMORY_LIMIT; default: the host's budget)")
	o.MemoryBudget = config.Bytes(config.EnvBytes("WORKER_MEMORY_BUDGET", 0))
	fs.Var(&o.MemoryBudget, "memory-budget", "cpu: what the jobs of all gpujobs workers on this host may use together (env WORKER_MEMORY_BUDGET; default 80% of the machine's or container's memory)")
	fs.StringVar(&o.MemoryLedger, "memory-ledger", config.Env("WORKER_MEMORY_LEDGER", hostmem.DefaultPath), "cpu: the file through which the host's workers share the memory budget (env WORKER_MEMORY_LEDGER)")
	fs.IntVar(&o.Scheduler.GPUJobsPerGPU, "jobs-per-gpu", config.EnvInt("GPU_JOBS_PER_GPU", 0), "gpu: most jobs that share one GPU at once, while their memory estimates fit (1: one job per GPU); scheduler: the GPU workers' limit, for its wait estimates (env GPU_JOBS_PER_GPU; default 4)")
	fs.StringVar(&o.EstimatesFile, "estimates-file", config.Env("ESTIMATES_FILE", ""), "scheduler: keep the learned run-time estimates in this file across restarts (env ESTIMATES_FILE; default: in memory)")
	fs.StringVar(&o.Bridge.Queue, "job-queue", config.Env("JOB_QUEUE", "job_queue"), "bridge: the RabbitMQ queue the original clients publish jobs to (env JOB_QUEUE; their code says gpu_jobs)")
	fs.IntVar(&o.Bridge.Prefetch, "bridge-prefetch", config.EnvInt("BRIDGE_PREFETCH", 32), "bridge: messages being started at once (env BRIDGE_PREFETCH)")
	o.Commands.AddFlags(fs)
	o.Artifacts.AddFlags(fs)
	joblogs.QueueFlag(fs, &o.LogQueue)
	tc.AddFlags(fs)
	o.RabbitMQ.AddFlags(fs)
	lc.AddFlags(fs)
	return cmd
}

func start(ctx context.Context, c Config, o Options, tc config.Temporal, logger *zap.Logger) error {
	kinds, cpuImpls, err := c.registries()
	if err != nil {
		return err
	}
	o.Kinds, o.Strategy = kinds, c.Strategy
	// Health first: /healthz answers while the worker waits for its device or for Temporal.
	h := newHealth()
	if o.Role == RoleBridge {
		o.Bridge.metrics = bridge.NewMetrics(h.metrics)
	}
	stopHealth, err := h.serve(o.HealthAddr, logger)
	if err != nil {
		return err
	}
	defer stopHealth()
	if o.Role != RoleScheduler && o.Role != RoleBridge {
		a := &assembly{c: c, o: o, logger: logger}
		// Before any job: what the jobs of a worker that died here left running is killed.
		if a.dir, err = command.ClaimWorkDir(o.Commands.Dir, logger.Named("command")); err != nil {
			return err
		}
		defer a.dir.Close()
		if a.store, err = artifacts.Open(ctx, o.Artifacts); err != nil {
			return err
		}
		o.checkpoints = a.checkpoints
		logCfg := o.RabbitMQ
		logCfg.Queue = o.LogQueue
		logs := joblogs.NewPublisher(logCfg, "gpujobs-worker-logs "+o.WorkerID, logger.Named("joblogs"))
		defer logs.Close() // after the runner: its jobs' writers are closed by then
		a.logs = func(jobID string, attempt int) command.LogWriter { return logs.Job(jobID, attempt, joblogs.Limits{}) }
		runner, closeRunner, err := a.runner(cpuImpls)
		if err != nil {
			return err
		}
		defer closeRunner()
		o.Runner = runner
		if s, ok := runner.(interface{ Slots() int }); ok && o.Concurrency <= 0 {
			o.Concurrency = s.Slots() // the GPU runner: GPUs × jobs per GPU; command GPUs: one each
		}
		dev := runner.Device()
		logger.Info("kernel runner ready", zap.String("device", dev.Name), zap.String("memory", formatMem(dev.Memory)))
	}
	cl, err := dialWithRetry(ctx, tc, logger)
	if err != nil || cl == nil {
		return err
	}
	defer cl.Close()
	h.client.Store(&cl)
	return run(ctx, cl, o, h, logger)
}

// dialWithRetry connects to Temporal, retrying with backoff: workers often start before the
// server (compose, Kubernetes). It returns a nil client when ctx ends first.
func dialWithRetry(ctx context.Context, tc config.Temporal, logger *zap.Logger) (client.Client, error) {
	backoff := time.Second
	for {
		c, err := temporalx.Dial(ctx, tc, logger)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, config.ErrBadTLS) {
			return nil, err // retrying cannot fix a configuration mistake
		}
		logger.Warn("Temporal not reachable yet, retrying", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func formatMem(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
