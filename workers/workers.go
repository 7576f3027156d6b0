// Package workers assembles a gpujobs worker: the command line, the Temporal worker of one role
// (scheduler, cpu or gpu), the job kinds it knows and their implementations, its health
// endpoints and its drain on SIGTERM. bin/worker, bin/worker-gpu and a user's own program that
// adds job kinds (see Config, and examples/) are all built on it.
package workers

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/gpujobs/gpujobs/activities"
	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/scheduling"
	"github.com/gpujobs/gpujobs/scheduling/estimate"
	"github.com/gpujobs/gpujobs/workflows"
)

// Roles.
const (
	RoleScheduler = "scheduler"
	RoleCPU       = "cpu"
	RoleGPU       = "gpu"
)

// Options configure one worker.
type Options struct {
	Role      string
	WorkerID  string
	Namespace string
	RabbitMQ  config.RabbitMQ // scheduler: where results are published; cpu and gpu: the broker of the log queue
	// Concurrency is the number of jobs an executing worker runs at once. Default 1: one kernel
	// already uses every core (or the whole GPU).
	Concurrency int
	Scheduler   scheduling.Options
	// Kinds are the job kinds this worker knows; Strategy chooses devices (scheduler role).
	Kinds    *jobs.Kinds
	Strategy scheduling.Strategy
	// StopTimeout is how long a stopping worker lets running jobs finish before cancelling them
	// (they are then retried elsewhere). Default 30s.
	StopTimeout time.Duration
	// Runner runs kernels (cpu and gpu roles).
	Runner activities.Runner
	// EstimatesFile keeps the scheduler's run-time model across restarts ("" keeps it in memory).
	EstimatesFile string
	// HealthAddr serves /healthz and /readyz when set, e.g. ":8081".
	HealthAddr string
	// Bridge configures the bridge role.
	Bridge BridgeOptions
	// HeartbeatThrottle caps how long a heartbeat (and so the notice of a cancel) is held back by
	// the SDK. Default 500ms: a cancel reaches a running job within about a second.
	HeartbeatThrottle time.Duration
	// MemoryLimit is the most memory one job of a CPU worker may use; 0 means the host's budget.
	MemoryLimit config.Bytes
	// MemoryBudget is what the jobs of all gpujobs workers on the host may use together, shared
	// through the ledger at MemoryLedger; 0 means 80% of the machine's (or container's) memory.
	MemoryBudget config.Bytes
	MemoryLedger string
	// Commands are the command kind's settings (cpu and gpu roles).
	Commands CommandOptions
	// LogQueue is the queue that carries command jobs' output lines to the monitor (cpu and gpu).
	LogQueue string
	// Artifacts is the artifact store of command jobs' inputs and outputs and of every job's
	// checkpoints (cpu and gpu roles).
	Artifacts artifacts.Config

	// checkpoints opens a job's checkpoints in the artifact store (set by start).
	checkpoints func(ctx context.Context, jobID string) (jobs.Checkpointer, func(completed bool), error)
}

// run polls the role's task queue until ctx is done, then drains: it stops polling and gives
// running activities StopTimeout to finish. h reports readiness while it polls.
func run(ctx context.Context, c client.Client, o Options, h *health, logger *zap.Logger) error {
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.HeartbeatThrottle <= 0 {
		o.HeartbeatThrottle = 500 * time.Millisecond
	}
	if o.Role == RoleBridge {
		return runBridge(ctx, c, o, h, logger)
	}
	wo := worker.Options{Identity: o.WorkerID, WorkerStopTimeout: o.StopTimeout, MaxHeartbeatThrottleInterval: o.HeartbeatThrottle}
	var w worker.Worker
	switch o.Role {
	case RoleScheduler:
		pub := rabbit.NewPublisher(o.RabbitMQ, "gpujobs-scheduler "+o.WorkerID, logger.Named("rabbitmq"))
		waiting := promauto.With(h.metrics).NewGauge(prometheus.GaugeOpts{Name: "gpujobs_results_waiting_to_publish",
			Help: "Jobs whose result this scheduler worker could not hand to RabbitMQ yet (retried until the broker takes it)."})
		defer pub.Close()
		w = worker.New(c, jobs.JobQueue, wo)
		w.RegisterWorkflowWithOptions(workflows.JobWorkflow, workflow.RegisterOptions{Name: workflows.JobWorkflowName})
		w.RegisterWorkflowWithOptions(workflows.SweepWorkflow, workflow.RegisterOptions{Name: workflows.SweepWorkflowName})
		model := estimate.NewModel()
		if o.EstimatesFile != "" {
			if err := model.Load(o.EstimatesFile); err != nil {
				logger.Warn("starting with default estimates", zap.Error(err))
			}
		}
		learner := &activities.Learner{Kinds: o.Kinds, Model: model, Path: o.EstimatesFile, Logger: logger}
		defer learner.Close()
		sched := &activities.Scheduler{Kinds: o.Kinds, Inspector: jobclient.TemporalInspector{Client: c, Namespace: o.Namespace},
			Model: model, Strategy: o.Strategy, Logger: logger, Options: o.Scheduler}
		w.RegisterActivityWithOptions(sched.Schedule, activity.RegisterOptions{Name: workflows.ScheduleActivity})
		publisher := &activities.Publisher{Broker: pub, Published: learner.Learn, Waiting: func(n int) { waiting.Set(float64(n)) }}
		w.RegisterActivityWithOptions(publisher.PublishResult, activity.RegisterOptions{Name: workflows.PublishActivity})
		h.queue.Store(&queueSource{c: c, namespace: o.Namespace})
	case RoleCPU, RoleGPU:
		if o.Runner == nil {
			return fmt.Errorf("role %s needs a kernel runner", o.Role)
		}
		queue := jobs.CPUQueue
		if o.Role == RoleGPU {
			queue = jobs.GPUQueue
		}
		wo.MaxConcurrentActivityExecutionSize = o.Concurrency
		w = worker.New(c, queue, wo)
		ex := &activities.Executor{Kinds: o.Kinds, Runner: o.Runner, WorkerID: o.WorkerID, Logger: logger,
			Notify:      func(jobID string, hb jobs.Heartbeat) { notifyJob(c, jobID, hb, logger) },
			Checkpoints: o.checkpoints}
		h.wedged = ex.Wedged
		promauto.With(h.metrics).NewGaugeFunc(prometheus.GaugeOpts{Name: "gpujobs_worker_wedged_kernels",
			Help: "Kernels that did not stop when told to (stalled) and still run; the worker is not ready while there is one."},
			func() float64 { return float64(ex.Wedged()) })
		w.RegisterActivityWithOptions(ex.Execute, activity.RegisterOptions{Name: workflows.ExecuteActivity})
	default:
		return fmt.Errorf("unknown role %q: use scheduler, cpu, gpu or bridge", o.Role)
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start %s worker: %w", o.Role, err)
	}
	h.polling.Store(true)
	logger.Info("worker polling", zap.String("role", o.Role), zap.String("worker_id", o.WorkerID), zap.Int("concurrency", o.Concurrency))
	return waitStop(ctx, o.Runner, func() {
		h.polling.Store(false)
		logger.Info("worker stopping: no new jobs, running ones get a grace period", zap.Duration("stop_timeout", o.StopTimeout))
		w.Stop()
		logger.Info("worker stopped")
	}, logger)
}

// notifyJob signals a job's workflow with its worker's progress, for the Web UI; best effort.
func notifyJob(c client.Client, jobID string, hb jobs.Heartbeat, logger *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SignalWorkflow(ctx, jobID, "", workflows.ProgressSignal, hb); err != nil {
		logger.Debug("progress not signalled", zap.String("job_id", jobID), zap.Error(err))
	}
}
