package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestFlagErrorsNameTheFlagAndWhatItTakes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--size", "abc"}, `invalid --size "abc": want an integer`},
		{[]string{"--timeout", "10"}, `invalid --timeout "10": want a duration with its unit`},
		{[]string{"-n", "x"}, `invalid --count "x": want an integer`},
	} {
		var size, count int
		var timeout time.Duration
		cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }, SilenceErrors: true, SilenceUsage: true}
		cmd.Flags().IntVar(&size, "size", 0, "")
		cmd.Flags().IntVarP(&count, "count", "n", 0, "")
		cmd.Flags().DurationVar(&timeout, "timeout", 0, "")
		cmd.SetFlagErrorFunc(flagError)
		cmd.SetArgs(tt.args)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
