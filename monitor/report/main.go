// Command monitor-report writes the results report: report.md, results.csv and the PNG charts,
// from the results file that monitor serve keeps. It is a binary of its own so that the
// monitor's (serve, tail) links no plotting code; `monitor report` runs it.
package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/cli"
	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/internal/monitor/charts"
)

func main() { cli.Main("monitor report", newRoot()) }

func newRoot() *cobra.Command {
	var store, out string
	var prices monitor.Prices
	var sweeps int
	cmd := &cobra.Command{
		Use:           "monitor-report",
		Short:         "Write report.md, results.csv and PNG charts from the results file",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agg := monitor.NewAggregator(nil)
			agg.SetPrices(prices)
			st, err := monitor.ReadStore(store, func(r monitor.Record) { agg.Add(r.Result) })
			if err != nil {
				return fmt.Errorf("read results: %w", err)
			}
			agg.RestoreCounters(st.Counters)
			agg.SetRejectedAtLoad(st.NotLoaded())
			for _, sk := range st.Skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "skipped line %d of %s: %s\n", sk.Line, store, sk.Reason)
			}
			if n := st.NotLoaded(); n > len(st.Skipped) {
				fmt.Fprintf(cmd.ErrOrStderr(), "skipped %d lines of %s in all (not valid results)\n", n, store)
			}
			paths, err := monitor.WriteReport(out, store, agg, charts.All()...)
			if err != nil {
				return err
			}
			more, err := monitor.WriteSweepReport(out, agg, sweeps, charts.SweepCurve)
			paths = append(paths, more...)
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
	monitor.AddPriceFlag(cmd.Flags(), &prices)
	cmd.Flags().StringVar(&out, "out", "results", "directory for report.md, results.csv and the charts")
	cmd.Flags().IntVar(&sweeps, "sweeps", 20, "the report shows this many sweeps, the most recent first, each with its chart (0: all)")
	return cmd
}
