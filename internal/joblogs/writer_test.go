package joblogs

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

// offline is a Publisher whose broker never answers.
func offline(t *testing.T) *Publisher {
	t.Helper()
	p := NewPublisher(config.RabbitMQ{URL: "amqp://guest:guest@" + testutil.FreeAddr(t) + "/", Queue: "offline"}, "test", nil)
	t.Cleanup(func() { p.Close() })
	return p
}

// idle returns a Writer whose sending goroutine is not started, so that what Write queued stays
// in pending for the test to read.
func idle(t *testing.T, l Limits) *Writer {
	t.Helper()
	return offline(t).newWriter("job-1", 3, l)
}

func pending(w *Writer) []Line {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Line(nil), w.pending...)
}

func TestWriteSplitsLinesAndNumbersThem(t *testing.T) {
	w := idle(t, Limits{MaxLineBytes: 8})
	w.Write(StreamStdout, "one\ntwo\n")
	w.Write(StreamStderr, "ααααα") // 10 bytes: split at a rune boundary, not inside one
	w.Write("bogus", "x\xffy")     // an unknown stream is stderr; invalid UTF-8 becomes U+FFFD
	w.Write(StreamStdout, "")      // a blank line is a line
	got := pending(w)
	want := []struct{ stream, text string }{{"stdout", "one"}, {"stdout", "two"}, {"stderr", "αααα"}, {"stderr", "α"}, {"stderr", "x\uFFFDy"}, {"stdout", ""}}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(got), len(want), got)
	}
	for i, l := range got {
		if l.Seq != int64(i+1) || l.Stream != want[i].stream || l.Text != want[i].text || l.JobID != "job-1" || l.Attempt != 3 || !utf8.ValidString(l.Text) {
			t.Errorf("line %d: %+v, want seq %d %q %q", i, l, i+1, want[i].stream, want[i].text)
		}
	}
	if w.Dropped() != 0 {
		t.Errorf("dropped %d", w.Dropped())
	}
}

func TestWriteCutsAtMaxBytesWithOneNotice(t *testing.T) {
	w := idle(t, Limits{MaxBytes: 100})
	for range 10 {
		w.Write(StreamStdout, strings.Repeat("x", 30))
	}
	w.Write(StreamStdout, "") // after the cut, even an empty line is not kept
	if got := pending(w); len(got) != 3 {
		t.Fatalf("%d lines kept, want 3 (90 of 100 bytes)", len(got))
	}
	if w.Dropped() != 210 {
		t.Errorf("dropped %d, want 210", w.Dropped())
	}
	w.finish()
	w.finish() // once
	w.Write(StreamStdout, "late")
	got := pending(w)
	if len(got) != 4 || got[3].Stream != StreamGpujobs || got[3].Text != "log cut at 100 B: 210 more bytes not kept" || got[3].Seq != 4 {
		t.Errorf("after Close: %+v", got)
	}
	if w.Dropped() != 214 {
		t.Errorf("dropped %d, want 214 (a write after Close counts too)", w.Dropped())
	}
	w2 := idle(t, Limits{})
	w2.mu.Lock()
	w2.cut = 12345
	w2.mu.Unlock()
	w2.finish()
	if got := pending(w2); len(got) != 1 || got[0].Text != "log cut at 64 MiB: 12345 more bytes not kept" {
		t.Errorf("notice %+v", got)
	}
}

func TestFullBufferDropsAfterAtMostAStallAndSaysSoOnce(t *testing.T) {
	w := idle(t, Limits{})
	line := strings.Repeat("y", 1000)
	start := time.Now()
	for range 10_000 { // 10 MB, more than the 8 MiB buffer
		w.Write(StreamStdout, line)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("10,000 writes took %s with the broker away", d)
	}
	kept := len(pending(w))
	if want := BufferBytes / 1000; kept != want {
		t.Errorf("%d lines buffered, want %d (8 MiB)", kept, want)
	}
	lost := 10_000 - kept
	if w.Dropped() != int64(lost)*1000 {
		t.Errorf("dropped %d bytes, want %d", w.Dropped(), lost*1000)
	}
	// The broker takes the buffer (as run does on a confirm): the next line comes after one notice.
	w.mu.Lock()
	w.pending, w.pendingB, w.buffered = nil, 0, 0
	w.mu.Unlock()
	w.Write(StreamStdout, "after")
	w.Write(StreamStdout, "and more")
	got := pending(w)
	if len(got) != 3 || got[0].Stream != StreamGpujobs || got[1].Text != "after" || got[0].Seq != int64(kept+1) {
		t.Fatalf("after the outage: %+v", got)
	}
	if want := "1612 lines (1.5 MiB) of output lost"; !strings.HasPrefix(got[0].Text, want) || lost != 1612 {
		t.Errorf("notice %q, want it to start with %q (lost %d)", got[0].Text, want, lost)
	}
}

func TestCloseWithoutBrokerSaysWhatWasNotSent(t *testing.T) {
	w := offline(t).Job("job-1", 1, Limits{})
	for range 6 {
		w.Write(StreamStdout, "line")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "6 lines not confirmed by RabbitMQ") || !strings.Contains(err.Error(), "connect to RabbitMQ") {
		t.Errorf("Close: %v", err)
	}
	if err := w.Close(ctx); err == nil {
		t.Error("a second Close says nothing")
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{64 << 20: "64 MiB", 8 << 20: "8 MiB", 1 << 30: "1 GiB", 1536: "1.5 KiB", 100: "100 B"} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
