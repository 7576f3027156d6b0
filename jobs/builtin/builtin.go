// Package builtin holds the params of gpujobs's built-in job kinds (the four benchmarks and
// command, a program of the user's): their fields and
// defaults, validation, work estimates and seeded inputs. It is pure Go with no numeric library,
// so a client validates a built-in job before submitting it without linking any kernel; the
// implementations are registered per device in kernels (CPU) and kernels/cuda (GPU).
package builtin

import (
	"fmt"

	"github.com/gpujobs/gpujobs/jobs"
)

// Specs returns the specs of the built-in kinds.
func Specs() []jobs.Spec {
	return []jobs.Spec{matrixMultiplySpec(), neuralNetworkSpec(), vectorAdditionSpec(), imageProcessingSpec(), commandSpec()}
}

// Kinds returns a registry of the built-in kinds.
func Kinds() *jobs.Kinds {
	k, err := jobs.NewKinds(Specs()...)
	if err != nil {
		panic(fmt.Sprintf("the built-in kinds do not register: %v", err)) // a constant table; a test covers it
	}
	return k
}

var (
	gflops = jobs.Metric{Name: "gflops", Unit: "GFLOP/s"}
	gbps   = jobs.Metric{Name: "gbps", Unit: "GB/s"}
)

// checkAll runs range checks in order and returns the first failure.
func checkAll(kind string, checks ...rangeCheck) error {
	for _, c := range checks {
		if err := jobs.CheckRange(kind, c.field, c.v, c.lo, c.hi); err != nil {
			return err
		}
	}
	return nil
}

type rangeCheck struct {
	field     string
	v, lo, hi int
}
