package montecarlo

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
)

func TestEstimateConvergesAndIsReproducible(t *testing.T) {
	p := &Params{Samples: 4_000_000, Steps: 4, Seed: 7}
	steps := 0
	a, err := RunCPU(context.Background(), p, func(jobs.Progress) { steps++ })
	if err != nil {
		t.Fatal(err)
	}
	// The standard error of the estimate is 4·sqrt(π/4·(1-π/4)/N) ≈ 8.2e-4 for 4e6 points.
	if e := a.Metrics["abs_error"]; e > 5*8.2e-4 || steps != 4 {
		t.Errorf("pi %.6f (error %.2g) after %d steps", a.Metrics["pi"], e, steps)
	}
	b, _ := RunCPU(context.Background(), p, func(jobs.Progress) {})
	if a.Metrics["pi"] != b.Metrics["pi"] {
		t.Errorf("two runs with seed 7 gave %v and %v", a.Metrics["pi"], b.Metrics["pi"])
	}
	if math.Abs(a.Metrics["pi"]-math.Pi) != a.Metrics["abs_error"] {
		t.Error("abs_error is not |pi - π|")
	}
}

func TestValidationNamesTheFieldAndRange(t *testing.T) {
	kinds, err := jobs.NewKinds(Spec())
	if err != nil {
		t.Fatal(err)
	}
	_, err = kinds.Decode(Kind, []byte(`{"samples": -5}`))
	if err == nil || !strings.Contains(err.Error(), "monte_carlo_pi: invalid samples: out of range, allowed 1..1099511627776") {
		t.Errorf("err %v", err)
	}
	if _, err := kinds.Decode(Kind, []byte(`{"sample": 5}`)); err == nil || !strings.Contains(err.Error(), "known fields are samples, steps, seed") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestStopsWithinAStep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	_, err := RunCPU(ctx, &Params{Samples: 1_000_000, Steps: 100, Seed: 1}, func(jobs.Progress) {
		if steps++; steps == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || steps != 2 {
		t.Errorf("err %v after %d steps", err, steps)
	}
}
