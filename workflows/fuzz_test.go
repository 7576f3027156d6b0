package workflows_test

import (
	"encoding/json"
	"testing"

	"github.com/gpujobs/gpujobs/workflows"
)

// Whatever a client starts JobWorkflow with, decoding its input either succeeds or says what
// could not be read; it never panics, and what it returns still encodes (for the failed result).
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{`{"job_id":"job-0123456789ab","job_type":"matrix_multiply","params":{"size":64}}`,
		`"garbage"`, `42`, `null`, ``, `{"submit_time":"yesterday"}`, `{"job_type":7}`, `{"params":"x"}`, `[1,2]`,
		`{"priority":1e400}`, `{"timeout":"1s"}`, `{"job_type":"a","job_type":"b"}`, `{"\u0000":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		req, err := workflows.DecodeRequest(input)
		if err != nil && err.Error() == "" {
			t.Fatal("an error without a message")
		}
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("decoded request does not encode: %v", err)
		}
	})
}
