// Package montecarlo is an example of a job kind added from outside gpujobs: a Monte Carlo
// estimate of π from random points in the unit square, with a CPU implementation. It is what a
// user writes; examples/worker registers it, beside the built-in kinds, in a worker of their own.
package montecarlo

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// Kind is the kind's name, as jobs are submitted with it.
const Kind = "monte_carlo_pi"

// Params are the job's parameters: how many points, in how many progress steps, from which seed.
type Params struct {
	Samples int64  `json:"samples"`
	Steps   int    `json:"steps"`
	Seed    uint64 `json:"seed"`
}

// Spec registers the kind: its defaults and its headline metric.
func Spec() jobs.Spec {
	return jobs.Spec{
		Kind:     Kind,
		Summary:  "Monte Carlo estimate of pi, reports samples/s and the error",
		New:      func() jobs.Params { return &Params{Samples: 100_000_000, Steps: 10, Seed: 1} },
		Headline: jobs.Metric{Name: "samples_per_sec", Unit: "samples/s"},
	}
}

func (*Params) Kind() string { return Kind }

// Validate names the field and its range, as every kind's validation does.
func (p *Params) Validate() error {
	if p.Samples < 1 || p.Samples > 1<<40 {
		return &jobs.ParamError{Kind: Kind, Field: "samples", Reason: "out of range, allowed 1..1099511627776"}
	}
	return jobs.CheckRange(Kind, "steps", p.Steps, 1, 10000)
}

// Work: about 20 floating-point operations per point (two uniform draws and a test), no memory
// to speak of.
func (p *Params) Work() jobs.Work {
	return jobs.Work{FLOPs: 20 * float64(p.Samples), MemBytes: 1 << 20, Steps: p.Steps}
}

// RunCPU counts the points inside the quarter circle on every core, one step at a time, and
// stops within a step once ctx is done. Each core draws from its own seeded stream, so a run is
// reproducible for a given seed and core count.
func RunCPU(ctx context.Context, p *Params, report jobs.Reporter) (jobs.Output, error) {
	workers := runtime.GOMAXPROCS(0)
	var inside, done int64
	start := time.Now()
	for step := 1; step <= p.Steps; step++ {
		n := p.Samples*int64(step)/int64(p.Steps) - done
		counts := make([]int64, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(p.Seed, uint64(step)<<16|uint64(w)))
				var c int64
				for i := int64(w); i < n; i += int64(workers) {
					x, y := r.Float64(), r.Float64()
					if x*x+y*y <= 1 {
						c++
					}
				}
				counts[w] = c
			}()
		}
		wg.Wait()
		for _, c := range counts {
			inside += c
		}
		done += n
		report(jobs.Progress{Iteration: step, Total: p.Steps})
		if err := jobs.Stopped(ctx, Kind, step, p.Steps); err != nil {
			return jobs.Output{}, err
		}
	}
	elapsed := time.Since(start)
	pi := 4 * float64(inside) / float64(done)
	return jobs.Output{
		ProcessingTime: elapsed,
		Threads:        workers,
		Metrics: map[string]float64{
			"pi":              pi,
			"abs_error":       math.Abs(pi - math.Pi),
			"samples_per_sec": jobs.Rate(float64(done), elapsed),
		},
	}, nil
}
