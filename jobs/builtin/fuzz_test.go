package builtin_test

import (
	"encoding/json"
	"testing"

	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// Whatever bytes arrive as params, decoding either fails with an error or returns params that
// pass their own validation, whose work estimate is finite and non-negative, and that encode
// back to JSON; it never panics.
func FuzzDecodeParams(f *testing.F) {
	for _, seed := range []string{`{}`, `{"size": 64}`, `{"size": -1}`, `{"size": 1e400}`, `{"size": 10} {"size": 20}`,
		`{"epochs": 2, "batch_size": 0}`, `{"kernel_size": 4}`, `[]`, `null`, `"x"`, `{"learning_rate": "NaN"}`,
		`{"batch_size": 4096, "image_size": 8192, "filters": 4096}`, `{"samples": 16777216, "input_size": 1048576}`} {
		for _, kind := range builtin.Kinds().Names() {
			f.Add(kind, []byte(seed))
		}
	}
	kinds := builtin.Kinds()
	f.Fuzz(func(t *testing.T, kind string, raw []byte) {
		p, err := kinds.Decode(kind, raw)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("decoded params fail their own validation: %v", err)
		}
		w := p.Work()
		if !(w.FLOPs >= 0) || !(w.Bytes >= 0) || w.MemBytes < 0 || w.TransferBytes < 0 || w.Steps < 0 {
			t.Fatalf("work estimate %+v", w)
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("params do not encode: %v", err)
		}
	})
}
