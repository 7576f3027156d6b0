// Package cli runs every gpujobs command the same way: the context is canceled on SIGINT or
// SIGTERM (workers drain, waits stop), an error is one line on stderr, and the process exits once.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main executes cmd and exits: 0 on success, 1 with "name: error" on stderr otherwise.
func Main(name string, cmd *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
