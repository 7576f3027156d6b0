package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/workflows"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "monitor",
		Short:         "Follow gpujobs results",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(tailCmd())
	return root
}

func tailCmd() *cobra.Command {
	var (
		rc     config.RabbitMQ
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Consume the result queue and print one line per result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := rabbit.Dial(rc, "gpujobs-monitor-tail")
			if err != nil {
				return err
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			if err := rabbit.Declare(ch, rc); err != nil {
				return err
			}
			if err := ch.Qos(16, 0, false); err != nil {
				return err
			}
			deliveries, err := ch.ConsumeWithContext(cmd.Context(), rc.Queue, "monitor-tail", false, false, false, false, nil)
			if err != nil {
				return fmt.Errorf("consume %s: %w", rc.Queue, err)
			}
			out := cmd.OutOrStdout()
			for d := range deliveries {
				var r workflows.JobResult
				if err := json.Unmarshal(d.Body, &r); err != nil || r.JobID == "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "rejecting malformed message %q to %s\n", d.MessageId, rabbit.DeadLetterQueue(rc.Queue))
					d.Reject(false) //nolint:errcheck // the channel closing ends the loop
					continue
				}
				printResult(out, r, d.Body, asJSON)
				d.Ack(false) //nolint:errcheck
			}
			if cmd.Context().Err() != nil {
				return nil
			}
			return fmt.Errorf("connection to RabbitMQ closed")
		},
	}
	rc.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each result as a JSON line")
	return cmd
}

func printResult(w io.Writer, r workflows.JobResult, raw []byte, asJSON bool) {
	if asJSON {
		fmt.Fprintf(w, "%s\n", raw)
		return
	}
	line := fmt.Sprintf("%s  %-16s %-9s %-3s %-40.40s %8.3fs  %s", r.JobID, r.JobType, r.Status, r.WorkerType, r.Device, r.ProcessingTime, jobclient.FormatRate(r))
	if r.Fallback != "" {
		line += "  (fallback: " + r.Fallback + ")"
	}
	if r.Error != "" {
		line += "  " + r.ErrorType + ": " + r.Error
	}
	fmt.Fprintln(w, line)
}
