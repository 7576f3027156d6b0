package artifacts

import (
	"strings"
	"testing"
)

func TestPrefixes(t *testing.T) {
	id := "job-0123456789ab"
	if got := OutputPrefix(id); got != "jobs/job-0123456789ab/outputs/" {
		t.Errorf("OutputPrefix = %q", got)
	}
	if got := CheckpointPrefix(id); got != "jobs/job-0123456789ab/checkpoint/" {
		t.Errorf("CheckpointPrefix = %q", got)
	}
	// Any job ID is exactly one segment, and different IDs never share a prefix.
	ids := []string{"a", "a/b", "a%2Fb", ".", "..", "a/../b", "%", "x/"}
	seen := map[string]string{}
	for _, id := range ids {
		p := JobPrefix(id)
		if err := checkPrefix(p); err != nil || strings.Count(p, "/") != 2 {
			t.Errorf("JobPrefix(%q) = %q: %v", id, p, err)
		}
		if other, dup := seen[p]; dup {
			t.Errorf("JobPrefix(%q) = JobPrefix(%q) = %q", id, other, p)
		}
		seen[p] = id
	}
}

func TestMatchPatterns(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"*.pt", []string{"model.pt", ".x.pt"}, []string{"ckpt/model.pt", "model.pth"}},
		{"**", []string{"a", "a/b/c"}, nil},
		{"**/*.pt", []string{"m.pt", "a/m.pt", "a/b/m.pt"}, []string{"a/m.ptx"}},
		{"logs/**", []string{"logs/a", "logs/x/y"}, []string{"logs", "other/logs/a"}},
		{"logs/", []string{"logs/a", "logs/x/y"}, []string{"logs"}},
		{"a/**/z", []string{"a/z", "a/b/z", "a/b/c/z"}, []string{"a/z/q", "b/a/z"}},
		{"./out/*.csv", []string{"out/r.csv"}, []string{"out/sub/r.csv"}},
		{"**/**/x", []string{"x", "a/x", "a/b/x"}, []string{"a/y"}},
		{"run-[0-9]/*", []string{"run-3/f"}, []string{"run-a/f"}},
	} {
		pats, err := compilePatterns([]string{tt.pattern})
		if err != nil {
			t.Fatalf("%q: %v", tt.pattern, err)
		}
		for _, m := range tt.match {
			if !matchAny(pats, m) {
				t.Errorf("%q does not match %q", tt.pattern, m)
			}
		}
		for _, m := range tt.miss {
			if matchAny(pats, m) {
				t.Errorf("%q matches %q", tt.pattern, m)
			}
		}
	}
	if _, err := compilePatterns(nil); err == nil {
		t.Error("no patterns accepted")
	}
}
