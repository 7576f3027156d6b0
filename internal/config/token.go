package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// MinTokenLen is the shortest monitor token accepted: a guessable one protects nothing.
const MinTokenLen = 16

// MonitorToken is the bearer token of the monitor's API, for the server and its clients: given
// with --token (env MONITOR_TOKEN) or read from --token-file (env MONITOR_TOKEN_FILE), e.g. a
// mounted Kubernetes Secret. A token on the command line is visible to every user of the host
// (ps): prefer the environment or the file.
type MonitorToken struct {
	Value string
	File  string
}

// AddFlags registers --token and --token-file.
func (m *MonitorToken) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&m.Value, "token", Env("MONITOR_TOKEN", ""), "bearer token of the monitor's API (env MONITOR_TOKEN; prefer it or --token-file to the command line, which ps shows)")
	fs.Lookup("token").DefValue = "" // --help must not print it
	fs.StringVar(&m.File, "token-file", Env("MONITOR_TOKEN_FILE", ""), "file holding the bearer token, e.g. a mounted secret (env MONITOR_TOKEN_FILE)")
}

// Resolve returns the token ("" when none is set). Surrounding whitespace, such as a file's
// final newline, is not part of it; a token shorter than MinTokenLen, or both a token and a file,
// is an error.
func (m MonitorToken) Resolve() (string, error) {
	tok := strings.TrimSpace(m.Value)
	if m.File != "" {
		if tok != "" {
			return "", errors.New("both a token (--token, MONITOR_TOKEN) and a token file (--token-file, MONITOR_TOKEN_FILE) are set: use one")
		}
		b, err := os.ReadFile(m.File)
		if err != nil {
			return "", fmt.Errorf("read the monitor token: %w", err)
		}
		if tok = strings.TrimSpace(string(b)); tok == "" {
			return "", fmt.Errorf("monitor token file %s is empty", m.File)
		}
	}
	if tok == "" {
		return "", nil
	}
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("monitor token of %d characters: use at least %d (e.g. openssl rand -hex 32)", len(tok), MinTokenLen)
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", errors.New("monitor token contains spaces or control characters: it travels in an HTTP header")
	}
	return tok, nil
}
