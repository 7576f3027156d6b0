package monitor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/joblogs"
)

// readAll returns a job's stored lines (as attempt/seq/text) and ends, in file order.
func readAll(t *testing.T, s *LogStore, job string) (lines []string, ends []string) {
	t.Helper()
	_, err := s.Read(job, LogCursor{}, func(_ int64, l *joblogs.Line, e *joblogs.End) bool {
		if l != nil {
			lines = append(lines, fmt.Sprintf("%d/%d/%s", l.Attempt, l.Seq, l.Text))
		} else {
			ends = append(ends, fmt.Sprintf("%d/%d", e.Attempt, e.EndSeq))
		}
		return true
	})
	if err != nil && err != ErrNoLog {
		t.Fatal(err)
	}
	return lines, ends
}

func texts(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

func TestLogStoreKeepsEachLineOnceAcrossRedeliveriesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	s, st, err := OpenLogStore(dir, 0, 0)
	if err != nil || st.Jobs != 0 {
		t.Fatal(st, err)
	}
	a := logMessage("job-a", 1, 1, joblogs.StreamStdout, texts(3, "a")...)
	b := logMessage("job-a", 1, 4, joblogs.StreamStdout, texts(2, "b")...)
	got, err := s.Append([]joblogs.Message{a, a, b, endOf("job-a", 1, 5), endOf("job-a", 1, 5)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Lines != 5 || got.Ends != 1 || got.Duplicates != 4 {
		t.Errorf("append: %+v, want 5 lines, 1 end, 4 duplicates", got)
	}
	// Out of order (a requeue can do that): 3..4 before 1..2; each kept once.
	c1 := logMessage("job-a", 2, 3, joblogs.StreamStderr, "x3", "x4")
	c0 := logMessage("job-a", 2, 1, joblogs.StreamStderr, "x1", "x2")
	if got, err := s.Append([]joblogs.Message{c1, c0, c1}); err != nil || got.Lines != 4 || got.Duplicates != 2 {
		t.Errorf("out of order: %+v %v", got, err)
	}
	s.Close()

	// A restart reads nothing until the job is touched, then drops what it holds already.
	s, st, err = OpenLogStore(dir, 0, 0)
	if err != nil || st.Jobs != 1 || st.Bytes == 0 {
		t.Fatal(st, err)
	}
	defer s.Close()
	if len(s.jobs) != 0 {
		t.Errorf("%d job indexes loaded at start", len(s.jobs))
	}
	if got, err := s.Append([]joblogs.Message{b, c0, logMessage("job-a", 2, 5, joblogs.StreamStdout, "x5")}); err != nil || got.Lines != 1 || got.Duplicates != 4 {
		t.Errorf("after a restart: %+v %v, want 1 new line and 4 duplicates", got, err)
	}
	lines, ends := readAll(t, s, "job-a")
	want := "1/1/a1 1/2/a2 1/3/a3 1/4/b1 1/5/b2 2/3/x3 2/4/x4 2/1/x1 2/2/x2 2/5/x5"
	if strings.Join(lines, " ") != want || strings.Join(ends, " ") != "1/5" {
		t.Errorf("stored %v, ends %v; want %s and 1/5", lines, ends, want)
	}
	if s.Total() != fileSize(t, filepath.Join(dir, "job-a.jsonl")) {
		t.Errorf("total %d, file %d", s.Total(), fileSize(t, filepath.Join(dir, "job-a.jsonl")))
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestLogStoreCutsATornLastLineAndSkipsCorruptOnes(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := OpenLogStore(dir, 0, 0)
	if _, err := s.Append([]joblogs.Message{logMessage("job-t", 1, 1, joblogs.StreamStdout, "one", "two")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, "job-t.jsonl")
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n" + `{"job_id":"job-t","attempt":1,"seq":3,"str`) // a hand edit, then a torn write
	f.Close()
	s, _, _ = OpenLogStore(dir, 0, 0)
	defer s.Close()
	if got, err := s.Append([]joblogs.Message{logMessage("job-t", 1, 2, joblogs.StreamStdout, "two", "three")}); err != nil || got.Lines != 1 || got.Duplicates != 1 {
		t.Errorf("after a torn write: %+v %v", got, err)
	}
	if lines, _ := readAll(t, s, "job-t"); strings.Join(lines, " ") != "1/1/one 1/2/two 1/3/three" {
		t.Errorf("stored %v", lines)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(string(b), "\n") != 4 || !strings.Contains(string(b), "not json\n") {
		t.Errorf("file:\n%s", b)
	}
}

func TestLogStoreBoundsAJobAndAllLogs(t *testing.T) {
	dir := t.TempDir()
	line := strings.Repeat("z", 1000)
	big := func(job string, first int64, n int) joblogs.Message {
		ts := make([]string, n)
		for i := range ts {
			ts[i] = line
		}
		return logMessage(job, 1, first, joblogs.StreamStdout, ts...)
	}
	s, _, err := OpenLogStore(dir, 100_000, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Append([]joblogs.Message{big("job-big", 1, 40)})
	if err != nil || got.Capped == 0 || got.Lines+got.Capped != 40 {
		t.Fatalf("%+v %v", got, err)
	}
	if n := fileSize(t, filepath.Join(dir, "job-big.jsonl")); n > 20_000 {
		t.Errorf("job log of %d bytes, bound 20000", n)
	}
	// Jobs 0..9 of ~15 kB each: the total passes 100 kB, and the oldest logs go, whole.
	for i := range 10 {
		if _, err := s.Append([]joblogs.Message{big(fmt.Sprintf("job-%d", i), 1, 14)}); err != nil {
			t.Fatal(err)
		}
		if s.Total() > 100_000 {
			t.Fatalf("total %d after job %d, bound 100000", s.Total(), i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "job-big.jsonl")); !os.IsNotExist(err) {
		t.Error("the oldest log is still there")
	}
	if lines, _ := readAll(t, s, "job-9"); len(lines) != 14 {
		t.Errorf("the newest log has %d lines, want 14", len(lines))
	}
	var onDisk int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".jsonl") {
			onDisk += fileSize(t, filepath.Join(dir, e.Name()))
		}
	}
	if onDisk != s.Total() || onDisk > 100_000 {
		t.Errorf("%d bytes on disk, store counts %d", onDisk, s.Total())
	}
	if _, _, err := OpenLogStore(t.TempDir(), 1000, 2000); err == nil {
		t.Error("a job bound above the total bound is accepted")
	}
}

func TestLogStoreFileNamesAndOneMonitorPerDirectory(t *testing.T) {
	for id, want := range map[string]string{"job-3f2a9c1b7e04": "job-3f2a9c1b7e04.jsonl", "team.a_1": "team.a_1.jsonl"} {
		if got := logFileName(id); got != want {
			t.Errorf("%q: %q", id, got)
		}
	}
	for _, id := range []string{"../etc/passwd", "a/b", ".hidden", "ü", strings.Repeat("j", 200) + "x"} {
		name := logFileName(id)
		if !strings.HasPrefix(name, "~") || strings.ContainsAny(name, "/") || len(name) > 60 {
			t.Errorf("%q: file %q", id, name)
		}
	}
	dir := t.TempDir()
	s, _, err := OpenLogStore(dir, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenLogStore(dir, 0, 0); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second store on the directory: %v", err)
	}
	if _, err := s.Append([]joblogs.Message{logMessage("../x", 1, 1, joblogs.StreamStdout, "safe")}); err != nil {
		t.Fatal(err)
	}
	if lines, _ := readAll(t, s, "../x"); len(lines) != 1 {
		t.Errorf("lines of ../x: %v", lines)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x.jsonl")); err == nil {
		t.Error("a job ID wrote outside the directory")
	}
	s.Close()
}

func TestLogCursorFollowsAppends(t *testing.T) {
	s, _, _ := OpenLogStore(t.TempDir(), 0, 0)
	defer s.Close()
	var c LogCursor
	if _, err := s.Read("job-c", c, func(int64, *joblogs.Line, *joblogs.End) bool { return true }); err != ErrNoLog {
		t.Errorf("empty log: %v", err)
	}
	wake, stop := s.Subscribe("job-c")
	defer stop()
	var seen []int64
	read := func() {
		var err error
		c, err = s.Read("job-c", c, func(pos int64, l *joblogs.Line, e *joblogs.End) bool { seen = append(seen, pos); return true })
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Append([]joblogs.Message{logMessage("job-c", 1, 1, joblogs.StreamStdout, "a", "b")})
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after an append")
	}
	read()
	s.Append([]joblogs.Message{logMessage("job-c", 1, 3, joblogs.StreamStdout, "c"), endOf("job-c", 1, 3)})
	read()
	read()
	if fmt.Sprint(seen) != "[1 2 3 4]" {
		t.Errorf("positions %v", seen)
	}
}
