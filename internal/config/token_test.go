package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestMonitorTokenResolve(t *testing.T) {
	dir := t.TempDir()
	n := 0
	file := func(content string) string {
		n++
		p := filepath.Join(dir, strings.Repeat("t", n))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		m       MonitorToken
		want    string
		wantErr string
	}{
		{MonitorToken{}, "", ""},
		{MonitorToken{Value: "  0123456789abcdef  "}, "0123456789abcdef", ""},
		{MonitorToken{File: file("0123456789abcdef\n")}, "0123456789abcdef", ""}, // a secret file's newline is not part of it
		{MonitorToken{Value: "short"}, "", "at least 16"},
		{MonitorToken{Value: "0123456789 abcdef"}, "", "spaces"},
		{MonitorToken{File: file("\n")}, "", "is empty"},
		{MonitorToken{File: filepath.Join(dir, "missing")}, "", "read the monitor token"},
		{MonitorToken{Value: "0123456789abcdef", File: file("0123456789abcdef")}, "", "use one"},
	} {
		got, err := tt.m.Resolve()
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v: %q, %v; want %q, error with %q", tt.m, got, err, tt.want, tt.wantErr)
		}
	}
	// --help never shows the token of the environment.
	t.Setenv("MONITOR_TOKEN", "secret-from-the-environment")
	var m MonitorToken
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	m.AddFlags(fs)
	if m.Value != "secret-from-the-environment" || strings.Contains(fs.FlagUsages(), "secret-from") {
		t.Errorf("value %q, usage:\n%s", m.Value, fs.FlagUsages())
	}
}
