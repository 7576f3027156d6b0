// Package cli runs every gpujobs command the same way: the context is canceled on SIGINT or
// SIGTERM (workers drain, waits stop), an environment variable or a flag that cannot be read
// stops the command with one line naming it and what it takes, an error is one line on stderr,
// and the process exits once.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/config"
)

// Main executes cmd and exits: 0 on success, 1 with "name: error" on stderr otherwise.
func Main(name string, cmd *cobra.Command) {
	os.Exit(Run(name, cmd, os.Args[1:]))
}

// Run executes cmd with args and returns the exit code, printing an error as one line.
func Run(name string, cmd *cobra.Command, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prev := cmd.PersistentPreRunE
	cmd.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if err := config.CheckEnv(); err != nil {
			return err
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
	cmd.SetFlagErrorFunc(flagError)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return 1
	}
	return 0
}

// ExitError is an error with its own exit code (the starter's outcome codes).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

var (
	badFlagValue = regexp.MustCompile(`^invalid argument "(.*)" for "(.*?)" flag: `)
	longFlag     = regexp.MustCompile(`--([\w-]+)$`) // of "--size" or "-s, --size"
)

// flagError rewrites pflag's "invalid argument "abc" for "--size" flag: strconv.ParseInt:
// parsing "abc": invalid syntax" as "invalid --size "abc": want an integer".
func flagError(cmd *cobra.Command, err error) error {
	m := badFlagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	flag, want := m[2], "a valid value"
	if l := longFlag.FindStringSubmatch(flag); l != nil {
		flag = "--" + l[1]
	}
	if f := cmd.Flags().Lookup(flag[min(2, len(flag)):]); f != nil {
		want = map[string]string{
			"int": "an integer", "int64": "an integer", "uint64": "a non-negative integer", "float64": "a number",
			"duration": "a duration with its unit, such as 30s, 500ms or 2m", "bool": "true or false",
			"size": "a size such as 8GiB, 512MiB or a number of bytes", "intSlice": "integers separated by commas",
		}[f.Value.Type()]
		if want == "" {
			want = "a " + f.Value.Type()
		}
	}
	return fmt.Errorf("invalid %s %q: want %s", flag, m[1], want)
}
