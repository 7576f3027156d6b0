package jobclient

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

func TestBuildSweepExpandsTheGridInOrder(t *testing.T) {
	s, err := BuildSweep(SweepSpec{
		Spec:    Spec{JobType: "matrix_multiply", Set: map[string]any{"iterations": 2}, Tenant: "team-a"},
		Axes:    []Axis{{"size", []any{500, 1000}}, {"precision", []any{"fp32", "tf32"}}},
		Devices: []string{"cpu", "gpu"}, Repeat: 2, Parallel: 3, SweepID: "sweep-abc",
	}, builtin.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Jobs) != 16 || s.JobType != "matrix_multiply" || s.Parallel != 3 || s.SweepID != "sweep-abc" {
		t.Fatalf("%d jobs, type %q, parallel %d, ID %q", len(s.Jobs), s.JobType, s.Parallel, s.SweepID)
	}
	var got []string
	for i, r := range s.Jobs {
		var p struct {
			Size       int
			Iterations int
			Precision  string
		}
		if err := json.Unmarshal(r.Params, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d/%s/%s", p.Size, p.Precision, r.Device))
		if r.JobID != jobs.SweepJobID("sweep-abc", i, 16) || r.SweepID != "sweep-abc" || p.Iterations != 2 || r.Tenant != "team-a" {
			t.Errorf("job %d: %+v", i, r)
		}
	}
	want := "500/fp32/cpu 500/fp32/cpu 500/fp32/gpu 500/fp32/gpu 500/tf32/cpu 500/tf32/cpu 500/tf32/gpu 500/tf32/gpu " +
		"1000/fp32/cpu 1000/fp32/cpu 1000/fp32/gpu 1000/fp32/gpu 1000/tf32/cpu 1000/tf32/cpu 1000/tf32/gpu 1000/tf32/gpu"
	if strings.Join(got, " ") != want {
		t.Errorf("grid order\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if d, err := BuildSweep(SweepSpec{Spec: Spec{JobType: "vector_addition"}}, builtin.Kinds()); err != nil || len(d.Jobs) != 2 ||
		d.Jobs[0].Device != "cpu" || d.Jobs[1].Device != "gpu" || !strings.HasPrefix(d.SweepID, "sweep-") {
		t.Errorf("defaults: %+v, %v: want one point on cpu and gpu, a fresh sweep ID", d, err)
	}
}

func TestBuildSweepErrors(t *testing.T) {
	mm := Spec{JobType: "matrix_multiply"}
	many := make([]any, 600)
	for i := range many {
		many[i] = i + 1
	}
	for _, tc := range []struct {
		s    SweepSpec
		want string
	}{
		{SweepSpec{Spec: mm, Axes: []Axis{{"size", []any{100, -1}}}}, "sweep point size=-1 device=cpu: matrix_multiply: invalid size: -1 is out of range, allowed 1..32768"},
		{SweepSpec{Spec: mm, Axes: []Axis{{"size", many}}}, "more than 1000 jobs"},
		{SweepSpec{Spec: mm, Devices: []string{"cpu", "tpu"}}, `invalid device "tpu"`},
		{SweepSpec{Spec: mm, Repeat: 101}, "invalid --repeat 101: allowed 1..100"},
		{SweepSpec{Spec: mm, Parallel: -2}, "invalid --parallel -2"},
		{SweepSpec{Spec: mm, Axes: []Axis{{"size", []any{1}}, {"size", []any{2}}}}, "sweep param size is given twice"},
		{SweepSpec{Spec: mm, Axes: []Axis{{"epochs", []any{1}}}}, "invalid epochs: unknown field"},
		{SweepSpec{Spec: mm, SweepID: "my sweep"}, "invalid sweep_id"},
	} {
		if _, err := BuildSweep(tc.s, builtin.Kinds()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}
