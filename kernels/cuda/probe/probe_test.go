//go:build cgo

package probe_test

import (
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/kernels/cuda/probe"
)

// On a machine without a GPU, Probe must explain itself instead of crashing; on one with a GPU it
// must count it. Either way it must not panic or exit.
func TestProbe(t *testing.T) {
	n, err := probe.Probe()
	if err != nil {
		if n != 0 {
			t.Errorf("Probe() = %d devices and error %v", n, err)
		}
		for _, want := range []string{"libcuda.so.1", "cuInit", "cuDeviceGetCount", "no device"} {
			if strings.Contains(err.Error(), want) {
				t.Logf("no GPU here, as expected on a CI machine: %v", err)
				return
			}
		}
		t.Errorf("Probe() error %q does not say what is missing", err)
		return
	}
	if n < 1 {
		t.Errorf("Probe() = %d devices without error", n)
	}
	t.Logf("%d CUDA device(s)", n)
}

func TestHelpNeedsNoGPU(t *testing.T) {
	for _, prog := range []string{"worker-gpu", "gpucheck"} {
		text, ok := probe.Help(prog, []string{"--help"})
		if !ok || !strings.Contains(text, "Usage:\n  "+prog) || !strings.Contains(text, "--gemm") {
			t.Errorf("%s --help: %v %q", prog, ok, text)
		}
	}
	if _, ok := probe.Help("worker-gpu", []string{"--role", "gpu"}); ok {
		t.Error("help printed without being asked for")
	}
	if _, ok := probe.Help("worker-gpu", []string{"--", "--help"}); ok {
		t.Error("an argument after -- asked for help")
	}
}
