// Command worker is a gpujobs worker of a user's own: the built-in job kinds plus the Monte Carlo
// kind of examples/montecarlo, scheduled by the cheapest-device strategy of examples/cheapest.
// Build it with `go build ./examples/worker` (make build writes bin/example-worker) and run it
// in every role that must know the kind: `--role scheduler` and `--role cpu`.
package main

import (
	"github.com/gpujobs/gpujobs/examples/cheapest"
	"github.com/gpujobs/gpujobs/examples/montecarlo"
	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/workers"
)

func main() {
	workers.Main(workers.Config{
		Name: "example-worker",
		Kinds: []workers.Kind{{
			Spec: montecarlo.Spec(),
			CPU:  jobs.Typed(montecarlo.RunCPU),
		}},
		Strategy: cheapest.Strategy{GPUPerHour: 2.50, CPUPerHour: 0.04},
	})
}
