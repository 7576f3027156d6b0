package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/internal/logging"
	"github.com/gpujobs/gpujobs/internal/monitor"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "monitor",
		Short: "Count, store and show gpujobs results",
		Long: `The results monitor. serve is the one consumer of the result queue: it stores every result
once, computes the aggregates, and serves the API, the live stream and the dashboard.
tail and report read from it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), tailCmd(), reportCmd())
	return root
}

func serveCmd() *cobra.Command {
	var (
		o        monitor.Options
		lc       config.Log
		token    config.MonitorToken
		logQueue string
		maxTotal = config.Bytes(config.EnvBytes("MONITOR_LOG_MAX_TOTAL", monitor.DefaultLogMaxTotal))
		maxJob   = config.Bytes(config.EnvBytes("MONITOR_LOG_MAX_JOB", monitor.DefaultLogMaxJob))
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Consume the result queue, store results, serve the API and dashboard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logging.New(lc)
			if err != nil {
				return err
			}
			defer logger.Sync() //nolint:errcheck // stderr
			if o.Token, err = token.Resolve(); err != nil {
				return err
			}
			if o.SchedulerURL != "" {
				if o.SchedulerURL, err = monitor.ParseSchedulerURL(o.SchedulerURL); err != nil {
					return err
				}
			}
			o.Logs.Consumer.RabbitMQ = o.Consumer.RabbitMQ
			o.Logs.Consumer.RabbitMQ.Queue = logQueue
			o.Logs.MaxTotal, o.Logs.MaxJob = int64(maxTotal), int64(maxJob)
			return monitor.Serve(cmd.Context(), o, logger.With(zap.String("component", "monitor")))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Addr, "addr", config.Env("MONITOR_ADDR", monitor.DefaultAddr), "host:port of the API and dashboard (env MONITOR_ADDR)")
	fs.StringVar(&o.StorePath, "store", config.Env("RESULTS_FILE", monitor.DefaultStorePath), "the results file: JSON lines, fsynced before each ack (env RESULTS_FILE)")
	fs.IntVar(&o.Consumer.Prefetch, "prefetch", config.EnvInt("MONITOR_PREFETCH", monitor.DefaultPrefetch), "unacknowledged results RabbitMQ may send ahead (env MONITOR_PREFETCH)")
	fs.IntVar(&o.Consumer.BatchSize, "batch", config.EnvInt("MONITOR_BATCH", 0), "results per fsync and ack (env MONITOR_BATCH; default prefetch/2)")
	fs.DurationVar(&o.Consumer.FlushInterval, "flush-interval", config.EnvDuration("MONITOR_FLUSH_INTERVAL", monitor.DefaultFlushInterval), "longest wait for a batch to fill before it is written (env MONITOR_FLUSH_INTERVAL)")
	monitor.AddPriceFlag(fs, &o.Prices)
	fs.StringVar(&o.SchedulerURL, "scheduler-url", config.Env("MONITOR_SCHEDULER_URL", ""), "http://HOST:PORT of a scheduler worker's --health-addr, where /api/queue gets queued jobs' positions and predicted starts (env MONITOR_SCHEDULER_URL)")
	o.Consumer.RabbitMQ.AddFlags(fs)
	token.AddFlags(fs)
	fs.BoolVar(&o.InsecureNoAuth, "insecure-no-auth", false, "serve a non-loopback --addr without a token (only behind a proxy that authenticates)")
	joblogs.QueueFlag(fs, &logQueue)
	fs.StringVar(&o.Logs.Dir, "log-dir", config.Env("MONITOR_LOG_DIR", ""), "directory of the job logs, one file per job (env MONITOR_LOG_DIR; default logs/ beside --store)")
	fs.Var(&maxTotal, "log-max-total", "disk all job logs may use; past it the oldest are deleted (env MONITOR_LOG_MAX_TOTAL)")
	fs.Var(&maxJob, "log-max-job", "disk one job's log may use, all attempts; later lines are dropped (env MONITOR_LOG_MAX_JOB)")
	fs.IntVar(&o.Logs.Consumer.Prefetch, "log-prefetch", config.EnvInt("MONITOR_LOG_PREFETCH", monitor.DefaultLogPrefetch), "unacknowledged log messages RabbitMQ may send ahead (env MONITOR_LOG_PREFETCH)")
	lc.AddFlags(fs)
	return cmd
}

func reportCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "report [--store FILE] [--out DIR]",
		Short:              "Write report.md, results.csv and PNG charts from the results file (runs monitor-report)",
		DisableFlagParsing: true, // monitor-report parses them, and prints its own --help
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(args)
		},
	}
}

// runReport replaces this process with monitor-report, the binary beside this one that draws
// the charts: the monitor itself links no plotting code.
func runReport(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	report := filepath.Join(filepath.Dir(self), "monitor-report")
	if _, err := os.Stat(report); err != nil {
		return fmt.Errorf("the report is written by monitor-report, which is not beside %s: build it with make build", self)
	}
	return syscall.Exec(report, append([]string{report}, args...), os.Environ())
}
