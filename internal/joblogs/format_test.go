package joblogs

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func lines(job string, attempt int, first int64, texts ...string) []Line {
	out := make([]Line, len(texts))
	for i, t := range texts {
		out[i] = Line{JobID: job, Attempt: attempt, Seq: first + int64(i), Stream: StreamStdout, Time: now.Add(-time.Second), Text: t}
	}
	return out
}

func TestMessageRoundTrip(t *testing.T) {
	m := Message{JobID: "job-0123456789ab", Attempt: 2, Lines: lines("job-0123456789ab", 2, 7, "epoch 1", "", "tab\tand \x1b[31mcolour\x1b[0m", "<b>&</b> ✓")}
	m.Lines[1].Stream = StreamStderr
	m.End = &End{JobID: m.JobID, Attempt: 2, EndSeq: 10, Time: now}
	got, err := DecodeMessage(EncodeMessage(m), now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if id := m.ID(); id != "job-0123456789ab/2/7" {
		t.Errorf("ID %q", id)
	}
	if id := (Message{JobID: "a/b", Attempt: 1, End: &End{EndSeq: 3}}).ID(); id != "a/b/1/end-3" {
		t.Errorf("ID of an end %q", id)
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{"job_id": "job-1", "attempt": 1, "seq": 1, "stream": "stdout", "time": now.Format(time.RFC3339Nano), "text": "hi"}
	}
	enc := func(recs ...map[string]any) []byte {
		var b []byte
		for _, r := range recs {
			j, _ := json.Marshal(r)
			b = append(append(b, j...), '\n')
		}
		return b
	}
	with := func(k string, v any) map[string]any {
		r := good()
		if v == nil {
			delete(r, k)
		} else {
			r[k] = v
		}
		return r
	}
	second := with("seq", 2)
	for name, body := range map[string][]byte{
		"empty":                nil,
		"blank lines only":     []byte("\n \n"),
		"not JSON":             []byte("hello\n"),
		"a JSON array":         []byte("[1,2]\n"),
		"no job_id":            enc(with("job_id", nil)),
		"job_id with a space":  enc(with("job_id", "job 1")),
		"job_id too long":      enc(with("job_id", strings.Repeat("j", jobs.MaxJobIDLen+1))),
		"attempt 0":            enc(with("attempt", 0)),
		"attempt huge":         enc(with("attempt", MaxAttempt+1)),
		"seq 0":                enc(with("seq", 0)),
		"seq negative":         enc(with("seq", -4)),
		"seq too large":        enc(with("seq", int64(MaxSeq)+1)),
		"no seq":               enc(with("seq", nil)),
		"no text":              enc(with("text", nil)),
		"no stream":            enc(with("stream", nil)),
		"stream bogus":         enc(with("stream", "stdin")),
		"text with a newline":  enc(with("text", "a\nb")),
		"text too long":        enc(with("text", strings.Repeat("x", MaxLineBytesLimit+1))),
		"time missing":         enc(with("time", nil)),
		"time in 1999":         enc(with("time", "1999-12-31T23:59:59Z")),
		"time in 9999":         enc(with("time", "9999-01-01T00:00:00Z")),
		"time an hour ahead":   enc(with("time", now.Add(time.Hour).Format(time.RFC3339))),
		"two jobs":             enc(good(), with("job_id", "job-2")),
		"two attempts":         enc(good(), with("attempt", 2)),
		"seq gap":              enc(good(), with("seq", 3)),
		"seq repeated":         enc(good(), good()),
		"seq backwards":        enc(second, good()),
		"end then a line":      enc(map[string]any{"job_id": "job-1", "attempt": 1, "end_seq": 0, "time": now}, good()),
		"end before its lines": enc(good(), second, map[string]any{"job_id": "job-1", "attempt": 1, "end_seq": 1, "time": now}),
		"end with a text":      enc(map[string]any{"job_id": "job-1", "attempt": 1, "end_seq": 0, "text": "x", "time": now}),
		"end negative":         enc(map[string]any{"job_id": "job-1", "attempt": 1, "end_seq": -1, "time": now}),
		"too big":              []byte(strings.Repeat(" ", MaxMessageBytes+1)),
	} {
		if _, err := DecodeMessage(body, now); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	many := make([]string, MaxMessageRecords+1)
	for i := range many {
		many[i] = "x"
	}
	if _, err := DecodeMessage(EncodeMessage(Message{JobID: "j", Attempt: 1, Lines: lines("j", 1, 1, many...)}), now); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d records: err = %v", len(many), err)
	}
	// What is allowed: unknown fields (newer workers), an empty text, an end without lines.
	ok := with("extra", map[string]any{"x": 1})
	ok["text"] = ""
	if m, err := DecodeMessage(enc(ok, second), now); err != nil || len(m.Lines) != 2 || m.Lines[0].Text != "" {
		t.Errorf("unknown field and empty text: %+v, %v", m, err)
	}
	if m, err := DecodeMessage(enc(map[string]any{"job_id": "job-1", "attempt": 3, "end_seq": 0, "time": now}), now); err != nil || m.End == nil || m.End.Attempt != 3 {
		t.Errorf("an end alone: %+v, %v", m, err)
	}
	// Invalid UTF-8 in the JSON text is replaced by the decoder, so a text is always UTF-8.
	raw := []byte(`{"job_id":"job-1","attempt":1,"seq":1,"stream":"stderr","time":"` + now.Format(time.RFC3339) + "\",\"text\":\"\xff\xfe\"}\n")
	if m, err := DecodeMessage(raw, now); err != nil || m.Lines[0].Text != "\uFFFD\uFFFD" {
		t.Errorf("invalid UTF-8: %+v, %v", m, err)
	}
}

// FuzzDecodeMessage: no body panics the decoder, and whatever it accepts satisfies every rule and
// survives a round trip unchanged. make test runs it for a few seconds.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(EncodeMessage(Message{JobID: "job-1", Attempt: 1, Lines: lines("job-1", 1, 1, "a", "b")}))
	f.Add(EncodeMessage(Message{JobID: "j/x", Attempt: 9, Lines: lines("j/x", 9, 41, "\x1b[0m"), End: &End{JobID: "j/x", Attempt: 9, EndSeq: 41, Time: now}}))
	f.Add([]byte(`{"job_id":"job-1","attempt":1,"end_seq":0,"time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"job_id":"job-1","attempt":1,"seq":1,"stream":"stdout","time":"2026-01-01T00:00:00Z","text":"\u2028"}` + "\n{}"))
	f.Add([]byte("{\"job_id\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMessage(body, now)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if jobs.ValidateJobID(m.JobID) != nil || m.Attempt < 1 || m.Attempt > MaxAttempt || (len(m.Lines) == 0 && m.End == nil) {
			t.Fatalf("accepted %+v", m)
		}
		for i, l := range m.Lines {
			if CheckLine(l) != nil || l.JobID != m.JobID || l.Attempt != m.Attempt || checkTime(l.Time, now) != nil {
				t.Fatalf("accepted line %+v", l)
			}
			if i > 0 && l.Seq != m.Lines[i-1].Seq+1 {
				t.Fatalf("accepted seqs %d, %d", m.Lines[i-1].Seq, l.Seq)
			}
		}
		again, err := DecodeMessage(EncodeMessage(m), now)
		if err != nil {
			t.Fatalf("re-encoded message refused: %v", err)
		}
		if !reflect.DeepEqual(normal(again), normal(m)) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", again, m)
		}
	})
}

// normal drops the monotonic and location parts of times, which JSON does not keep.
func normal(m Message) Message {
	for i := range m.Lines {
		m.Lines[i].Time = m.Lines[i].Time.UTC()
	}
	if m.End != nil {
		e := *m.End
		e.Time = e.Time.UTC()
		m.End = &e
	}
	return m
}
