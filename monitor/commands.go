package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
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
		o  monitor.Options
		lc config.Log
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
			return monitor.Serve(cmd.Context(), o, logger.With(zap.String("component", "monitor")))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Addr, "addr", config.Env("MONITOR_ADDR", monitor.DefaultAddr), "host:port of the API and dashboard (env MONITOR_ADDR)")
	fs.StringVar(&o.StorePath, "store", config.Env("RESULTS_FILE", monitor.DefaultStorePath), "the results file: JSON lines, fsynced before each ack (env RESULTS_FILE)")
	fs.IntVar(&o.Consumer.Prefetch, "prefetch", config.EnvInt("MONITOR_PREFETCH", monitor.DefaultPrefetch), "unacknowledged results RabbitMQ may send ahead (env MONITOR_PREFETCH)")
	fs.IntVar(&o.Consumer.BatchSize, "batch", config.EnvInt("MONITOR_BATCH", 0), "results per fsync and ack (env MONITOR_BATCH; default prefetch/2)")
	fs.DurationVar(&o.Consumer.FlushInterval, "flush-interval", config.EnvDuration("MONITOR_FLUSH_INTERVAL", monitor.DefaultFlushInterval), "longest wait for a batch to fill before it is written (env MONITOR_FLUSH_INTERVAL)")
	o.Consumer.RabbitMQ.AddFlags(fs)
	lc.AddFlags(fs)
	return cmd
}

func reportCmd() *cobra.Command {
	var store, out string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write report.md, results.csv and PNG charts from the results file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agg := monitor.NewAggregator(nil)
			st, err := monitor.ReadStore(store, func(r monitor.Record) { agg.Add(r.Result) })
			if err != nil {
				return fmt.Errorf("read results: %w", err)
			}
			paths, err := monitor.WriteReport(out, store, agg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d results from %s\n", st.Results, store)
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&store, "store", config.Env("RESULTS_FILE", monitor.DefaultStorePath), "the results file written by serve (env RESULTS_FILE)")
	cmd.Flags().StringVar(&out, "out", "results", "directory for report.md, results.csv and the charts")
	return cmd
}
