package joblogs

// Against a real RabbitMQ (GPUJOBS_E2E=1; make test starts it): the shared broker with a fresh
// queue per test, and, for the outage, a private node that the test may stop.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap/zaptest"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

func testQueue(t *testing.T, url string) config.RabbitMQ {
	rc := config.RabbitMQ{URL: url, Queue: "joblogs_test_" + testutil.RandomHex(4), QueueType: "classic"}
	t.Cleanup(func() { testutil.DeleteQueues(rc.URL, rc.Queue) })
	return rc
}

// collector consumes a log queue and keeps what arrived, message by message.
type collector struct {
	mu    sync.Mutex
	lines []Line
	ends  []End
	ids   []string
	bad   []error
}

func collect(t *testing.T, rc config.RabbitMQ) *collector {
	t.Helper()
	ch := testutil.Channel(t, rc.URL)
	if err := Declare(ch, rc); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(rc.Queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	go func() {
		for d := range deliveries {
			m, err := DecodeMessage(d.Body, time.Now())
			c.mu.Lock()
			if err != nil {
				c.bad = append(c.bad, err)
			} else {
				c.lines = append(c.lines, m.Lines...)
				if m.End != nil {
					c.ends = append(c.ends, *m.End)
				}
				if d.MessageId != m.ID() || d.DeliveryMode != amqp.Persistent {
					c.bad = append(c.bad, fmt.Errorf("message_id %q (want %q), delivery mode %d", d.MessageId, m.ID(), d.DeliveryMode))
				}
				c.ids = append(c.ids, d.MessageId)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) snapshot() ([]Line, []End, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...), append([]End(nil), c.ends...), append([]error(nil), c.bad...)
}

// Two attempts written at once, 20,000 lines each, arrive in order, each line once, in batches.
func TestWriterLinesArriveInOrderOnce(t *testing.T) {
	rc := testQueue(t, testutil.SharedBroker(t))
	got := collect(t, rc)
	p := NewPublisher(rc, "joblogs-test", zaptest.NewLogger(t))
	defer p.Close()
	const n = 20_000
	var wg sync.WaitGroup
	for attempt := 1; attempt <= 2; attempt++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := p.Job("job-order", attempt, Limits{})
			for i := 1; i <= n; i++ {
				stream := StreamStdout
				if i%7 == 0 {
					stream = StreamStderr
				}
				w.Write(stream, fmt.Sprintf("attempt %d line %d", attempt, i))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := w.Close(ctx); err != nil {
				t.Error(err)
			}
			if w.Dropped() != 0 {
				t.Errorf("dropped %d", w.Dropped())
			}
		}()
	}
	wg.Wait()
	// Close returned: the broker has confirmed every message; the collector reads them.
	testutil.WaitFor(t, "both ends", 30*time.Second, func() bool { _, ends, _ := got.snapshot(); return len(ends) == 2 })
	lines, ends, bad := got.snapshot()
	if len(bad) > 0 {
		t.Fatalf("%d bad messages, first: %v", len(bad), bad[0])
	}
	next := map[int]int64{1: 1, 2: 1}
	for _, l := range lines {
		if l.Seq != next[l.Attempt] || l.Text != fmt.Sprintf("attempt %d line %d", l.Attempt, l.Seq) {
			t.Fatalf("got attempt %d seq %d %q, want seq %d", l.Attempt, l.Seq, l.Text, next[l.Attempt])
		}
		next[l.Attempt]++
	}
	for _, e := range ends {
		if e.EndSeq != n || next[e.Attempt] != n+1 {
			t.Errorf("end %+v after %d lines", e, next[e.Attempt]-1)
		}
	}
	got.mu.Lock()
	msgs := len(got.ids)
	got.mu.Unlock()
	t.Logf("%d lines in %d messages, in order, each once", len(lines), msgs)
	if msgs > 2*n/BatchLines+40 || msgs < 2*n/BatchLines {
		t.Errorf("%d messages for %d lines: batching is off", msgs, 2*n)
	}
}

// With the broker stopped, a Writer keeps taking lines without blocking, holds 8 MiB, drops the
// rest, and once the broker is back delivers what it held, one notice of what was lost, and
// what came after.
func TestWriterRidesOutABrokerOutage(t *testing.T) {
	testutil.SharedBroker(t)
	b := testutil.StartBroker(t)
	rc := config.RabbitMQ{URL: b.URL, Queue: "joblogs_outage", QueueType: "classic"}
	p := NewPublisher(rc, "joblogs-outage", zaptest.NewLogger(t))
	defer p.Close()
	w := p.Job("job-outage", 1, Limits{})
	w.Write(StreamStdout, "before")
	got := collect(t, rc)
	testutil.WaitFor(t, "the first line", 30*time.Second, func() bool { l, _, _ := got.snapshot(); return len(l) == 1 })

	b.Stop(t)
	line := strings.Repeat("o", 1000)
	start := time.Now()
	const during = 10_000 // 10 MB: more than the buffer
	for range during {
		w.Write(StreamStdout, line)
	}
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("%d writes took %s while the broker was away", during, took)
	}
	dropped := w.Dropped()
	b.Start(t)
	got = collect(t, rc)
	w.Write(StreamStdout, "after")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the end", time.Minute, func() bool { _, e, _ := got.snapshot(); return len(e) == 1 })
	lines, _, bad := got.snapshot()
	if len(bad) > 0 {
		t.Fatal(bad[0])
	}
	kept := 0
	var notice *Line
	for i, l := range lines {
		if l.Seq != int64(i+2) {
			t.Fatalf("line %d has seq %d", i, l.Seq)
		}
		switch {
		case l.Text == line:
			kept++
		case l.Stream == StreamGpujobs:
			notice = &lines[i]
		}
	}
	lost := during - kept
	if notice == nil || !strings.HasPrefix(notice.Text, fmt.Sprintf("%d lines (", lost)) || lines[len(lines)-1].Text != "after" {
		t.Fatalf("after the outage: %d lines, notice %+v, last %q", len(lines), notice, lines[len(lines)-1].Text)
	}
	if int64(lost)*1000 != dropped || kept*1000 > BufferBytes || kept < BufferBytes/1000-300 {
		t.Errorf("kept %d lines (buffer %d bytes), lost %d, dropped %d bytes", kept, BufferBytes, lost, dropped)
	}
	t.Logf("broker away: %d writes in %s, %d kept (8 MiB buffer), %d lost and said so in one notice: %q", during, took, kept, lost, notice.Text)
}
