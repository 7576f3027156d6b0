//go:build cgo

package probe

import (
	"embed"
	"strings"
)

// The GPU binaries' help, for a machine without a GPU: there the process must stop before
// gorgonia.org/cu's init (which ends it), so cobra never gets to print the real one. Keep these
// texts in step with workers/gpu and workers/gpucheck.
//
//go:embed help/*.txt
var helpFS embed.FS

// Help returns the help text of the program prog, and whether args ask for help.
func Help(prog string, args []string) (string, bool) {
	asked := false
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "help" {
			asked = true
		}
		if a == "--" {
			break
		}
	}
	if !asked {
		return "", false
	}
	b, err := helpFS.ReadFile("help/" + strings.TrimSuffix(prog, ".test") + ".txt")
	if err != nil {
		return "", false
	}
	return string(b), true
}
