//go:build cuda && cgo

package probe

import "os"

// NoDeviceMessage is the line a GPU binary prints, after its name, on a machine without a GPU.
const NoDeviceMessage = "no CUDA device found: start a CPU worker instead"

func init() {
	if _, err := Probe(); err != nil {
		prog := os.Args[0]
		for i := len(prog) - 1; i >= 0; i-- {
			if prog[i] == '/' {
				prog = prog[i+1:]
				break
			}
		}
		if len(prog) > 5 && prog[len(prog)-5:] == ".test" {
			// A cuda-tagged test binary: nothing to test here, which is not a failure. The last two
			// lines are what the testing package prints when no test ran, so that go test reports
			// "ok ... [no tests to run]" rather than a plain ok.
			os.Stdout.WriteString(prog + ": no CUDA device found (" + err.Error() + "): skipping the GPU tests\n" +
				"testing: warning: no tests to run\nPASS\n")
			os.Exit(0)
		}
		if help, ok := Help(prog, os.Args[1:]); ok {
			// Help needs no GPU: print it, and say why the program would not start here.
			os.Stdout.WriteString(help + "\nOn this machine: " + NoDeviceMessage + " (" + err.Error() + ").\n")
			os.Exit(0)
		}
		os.Stderr.WriteString(prog + ": " + NoDeviceMessage + " (" + err.Error() + ")\n")
		os.Exit(1)
	}
}
