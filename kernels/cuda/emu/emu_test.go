package emu_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKernelsOnCPU compiles testdata/kernels_test.cc with the .cu sources and runs it. It needs a C++20
// compiler with <barrier> (g++ 11 or newer; $CXX overrides) and skips without one.
func TestKernelsOnCPU(t *testing.T) {
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	if _, err := exec.LookPath(cxx); err != nil {
		t.Skipf("no C++ compiler (%s): %v", cxx, err)
	}
	probe := exec.Command(cxx, "-std=c++20", "-x", "c++", "-fsyntax-only", "-")
	probe.Stdin = strings.NewReader("#include <barrier>\nint main() {}\n")
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("%s cannot compile C++20 with <barrier>: %s", cxx, out)
	}
	bin := filepath.Join(t.TempDir(), "kernels_test")
	build := exec.Command(cxx, "-std=c++20", "-O1", "-pthread", "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-function",
		"-I../..", "-x", "c++", "kernels_test.cc", "-o", bin)
	build.Dir = "testdata"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("kernels differ from the references: %v", err)
	}
}
