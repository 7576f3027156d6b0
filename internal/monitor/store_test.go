package monitor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func records(t *testing.T, n int) []Record {
	t.Helper()
	var out []Record
	for _, r := range fixtureResults(n, 3, t0) {
		rec, err := ParseRecord(mustJSON(r))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func TestStoreAppendsOnceAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "results.jsonl")
	s, st, err := OpenStore(path, nil)
	if err != nil || st.Results != 0 {
		t.Fatalf("open: %v %+v", err, st)
	}
	recs := records(t, 10)
	added, err := s.Append(append(recs[:6:6], recs[2], recs[0])) // duplicates inside the batch
	if err != nil || len(added) != 6 {
		t.Fatalf("first batch: added %d, %v", len(added), err)
	}
	added, err = s.Append(recs[4:]) // 4 and 5 are stored already
	if err != nil || len(added) != 4 || added[0].Result.JobID != recs[6].Result.JobID {
		t.Fatalf("second batch: added %d, %v", len(added), err)
	}
	if added, _ := s.Append(recs[:3]); len(added) != 0 {
		t.Errorf("a redelivered batch added %d", len(added))
	}
	if s.Len() != 10 {
		t.Errorf("len %d", s.Len())
	}
	s.Close()

	var loaded []string
	s, st, err = OpenStore(path, func(r Record) { loaded = append(loaded, r.Result.JobID) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st.Results != 10 || st.NotLoaded() != 0 || st.Duplicates != 0 || st.Truncated != 0 || len(loaded) != 10 || loaded[9] != recs[9].Result.JobID {
		t.Errorf("reload: %+v, %v", st, loaded)
	}
	if added, _ := s.Append(recs[9:]); len(added) != 0 {
		t.Error("the reloaded index does not know a stored job")
	}
}

func TestStoreCutsATornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	recs := records(t, 3)
	var b bytes.Buffer
	for _, r := range recs[:2] {
		b.Write(r.Line)
		b.WriteByte('\n')
	}
	good := b.Len()
	b.Write(recs[2].Line[:len(recs[2].Line)/2]) // SIGKILL in the middle of a write
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s, st, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Results != 2 || st.Truncated != int64(b.Len()-good) {
		t.Errorf("load %+v, want 2 results and %d bytes cut", st, b.Len()-good)
	}
	if added, err := s.Append(recs[2:]); err != nil || len(added) != 1 {
		t.Fatalf("append after the cut: %d %v", len(added), err)
	}
	s.Close()
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[2] != string(recs[2].Line) {
		t.Errorf("file after the cut and an append:\n%s", data)
	}
}

func TestStoreSkipsCorruptAndDuplicateLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	recs := records(t, 2)
	content := string(recs[0].Line) + "\nnot json\n\n" + `{"job_type":"x","status":"completed"}` + "\n" + string(recs[0].Line) + "\n" +
		`{"job_id":"job-2","job_type":"x","status":"bogus"}` + "\n" + string(recs[1].Line) + "\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	s, st, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st.Results != 2 || st.Duplicates != 1 || st.Corrupt != 2 || st.Rejected != 1 || st.NotLoaded() != 3 {
		t.Errorf("load %+v", st)
	}
	want := []SkippedLine{{2, "not a result: invalid character 'o' in literal null (expecting 'u')"}, {4, "not a result: job_id is missing"},
		{6, `invalid result: status "bogus": want completed, failed or canceled`}}
	if !reflect.DeepEqual(st.Skipped, want) {
		t.Errorf("skipped %+v, want %+v", st.Skipped, want)
	}
}

func TestStoreIsLockedAgainstASecondMonitor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	s, _, err := OpenStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := OpenStore(path, nil); err == nil || !strings.Contains(err.Error(), "in use by another monitor") {
		t.Errorf("second open: %v", err)
	}
	if _, err := ReadStore(path, nil); err != nil {
		t.Errorf("reading for a report must not need the lock: %v", err)
	}
}

func TestParseRecordRejectsWhatIsNotAResult(t *testing.T) {
	for body, want := range map[string]string{
		`not json`:                              "invalid character",
		`[1,2]`:                                 "cannot unmarshal",
		`{"job_type":"x","status":"completed"}`: "job_id is missing",
		`{"job_id":"job-1","status":"completed"}`:                                         "job_type is missing",
		`{"job_id":"job-1","job_type":"x"}`:                                               "status is missing",
		`{"job_id":"job-1","job_type":"x","status":"completed","processing_time":"fast"}`: "cannot unmarshal",
	} {
		_, err := ParseRecord([]byte(body))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRecord(%s) = %v, want %q", body, err, want)
		}
	}
	rec, err := ParseRecord([]byte("{\n  \"job_id\": \"job-1\", \"job_type\": \"x\", \"status\": \"completed\", \"worker_type\": \"cpu\", \"new_field\": [1, 2]\n}"))
	if err != nil || string(rec.Line) != `{"job_id":"job-1","job_type":"x","status":"completed","worker_type":"cpu","new_field":[1,2]}` {
		t.Errorf("a pretty-printed result with an unknown field: %s %v", rec.Line, err)
	}
}
