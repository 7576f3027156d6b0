package joblogs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// Limits bound one job attempt's log; zero values mean the defaults.
type Limits struct {
	// MaxBytes is the most text kept per job attempt (default 64 MiB); past it the rest is
	// counted, not kept, and one notice at Close says how much.
	MaxBytes int64
	// MaxLineBytes is the longest line (default 16 KiB, at most MaxLineBytesLimit); a longer
	// one is split into several lines.
	MaxLineBytes int
}

// Defaults of Limits.
const (
	DefaultMaxBytes     = 64 << 20
	DefaultMaxLineBytes = 16 << 10
)

// Batching and buffering of a Writer.
const (
	// A message carries up to BatchLines lines or BatchBytes of text; a line waits at most
	// BatchDelay for its batch to fill.
	BatchLines = 256
	BatchBytes = 256 << 10
	BatchDelay = 50 * time.Millisecond
	// BufferBytes is the text one Writer holds while RabbitMQ has not confirmed it. A Write
	// that finds it full waits for room, at most MaxStall, while the broker takes messages (so
	// a job that prints faster than the log travels is slowed down, as by a full pipe, rather
	// than losing lines); while the broker is away or refusing, or once MaxStall has passed,
	// lines are dropped, and one notice says how many once there is room again.
	BufferBytes = 8 << 20
	MaxStall    = 2 * time.Second
	// confirmTimeout bounds the wait for one message's confirm before it is sent again.
	confirmTimeout = 30 * time.Second
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 5 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = DefaultMaxLineBytes
	}
	l.MaxLineBytes = max(min(l.MaxLineBytes, MaxLineBytesLimit), 4) // a rune fits
	return l
}

// Writer is the log of one job attempt. Write queues lines; a goroutine of the Writer sends
// them in batches as persistent messages and waits for each one's confirm before the next, so
// they reach the queue in order; a message that is not confirmed is sent again (same
// message_id), and the monitor drops the lines it has already. Close sends the rest and the
// attempt's End, and must be called.
type Writer struct {
	p       *Publisher
	jobID   string
	attempt int
	lim     Limits

	ctx    context.Context // canceled when Close gives up
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	pending  []Line    // not sent yet
	pendingB int       // text bytes in pending
	oldest   time.Time // when pending's first line was written
	seq      int64     // the last seq given out
	kept     int64     // text bytes kept, toward MaxBytes
	buffered int64     // text bytes pending or in flight
	cutting  bool
	cut      int64 // bytes past MaxBytes
	lost     int64 // bytes dropped on a full buffer, since the last notice
	lostN    int64
	dropped  int64 // all bytes not kept
	closing  bool
	finished bool  // the End is confirmed
	unsent   int64 // lines not confirmed when the Writer stopped
	lastErr  error
	room     chan struct{} // closed (and replaced) when confirmed lines leave the buffer
}

// Job returns the Writer of one job attempt; its goroutine runs until Close.
func (p *Publisher) Job(jobID string, attempt int, l Limits) *Writer {
	w := p.newWriter(jobID, attempt, l)
	go w.run()
	return w
}

func (p *Publisher) newWriter(jobID string, attempt int, l Limits) *Writer {
	ctx, cancel := context.WithCancel(context.Background())
	return &Writer{p: p, jobID: jobID, attempt: attempt, lim: l.withDefaults(), ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), done: make(chan struct{}), room: make(chan struct{})}
}

// Write adds text, printed on stream (stdout, stderr or gpujobs; any other is taken as stderr),
// to the log: one line, or several when text has newlines or is longer than MaxLineBytes.
// Invalid UTF-8 becomes U+FFFD. It never waits for the broker.
func (w *Writer) Write(stream, text string) {
	if !validStream(stream) {
		stream = StreamStderr
	}
	text = strings.ToValidUTF8(strings.TrimSuffix(text, "\n"), "\uFFFD")
	now := time.Now().UTC()
	stall := now.Add(MaxStall)
	w.mu.Lock()
	for {
		line, rest, more := strings.Cut(text, "\n")
		for {
			chunk := line
			if len(chunk) > w.lim.MaxLineBytes {
				chunk = cutAtRune(line, w.lim.MaxLineBytes)
			}
			w.add(stream, chunk, now, stall)
			line = line[len(chunk):]
			if line == "" {
				break
			}
		}
		if !more {
			break
		}
		text = rest
	}
	w.mu.Unlock()
	w.signal()
}

// cutAtRune returns the longest prefix of s of at most n bytes that ends at a rune boundary.
func cutAtRune(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// add keeps one line, or counts it as dropped; w.mu is held (and released while it waits for
// room in the buffer, until stall at the latest).
func (w *Writer) add(stream, text string, now, stall time.Time) {
	n := int64(len(text))
	switch {
	case w.closing:
		w.dropped += n // written after Close: nobody will read it
		return
	case w.cutting || w.kept+n > w.lim.MaxBytes:
		w.cutting = true
		w.cut += n
		w.dropped += n
		return
	case w.buffered+n > BufferBytes && !w.waitForRoom(n, stall):
		w.lost += n
		w.lostN++
		w.dropped += n
		return
	}
	w.noticeLost(now)
	w.kept += n
	w.queue(stream, text, now)
}

// waitForRoom waits until n more bytes fit in the buffer, while the broker takes messages and
// until stall; w.mu is held, and released while waiting. It does not wait while lines are being
// dropped already, or when the last send failed: the broker is away.
func (w *Writer) waitForRoom(n int64, stall time.Time) bool {
	for w.buffered+n > BufferBytes {
		left := time.Until(stall)
		if w.lastErr != nil || w.lostN > 0 || w.closing || left <= 0 {
			return false
		}
		room := w.room
		w.mu.Unlock()
		w.signal()
		t := time.NewTimer(left)
		select {
		case <-room:
		case <-t.C:
		case <-w.ctx.Done():
		}
		t.Stop()
		w.mu.Lock()
	}
	return true
}

// freed wakes the Writes waiting for room; w.mu is held.
func (w *Writer) freed() {
	close(w.room)
	w.room = make(chan struct{})
}

// noticeLost writes the notice of lines dropped on a full buffer, once there is room again.
func (w *Writer) noticeLost(now time.Time) {
	if w.lostN == 0 {
		return
	}
	w.queue(StreamGpujobs, fmt.Sprintf("%d lines (%s) of output lost: RabbitMQ did not take the log in time and its buffer (%s) was full",
		w.lostN, sizeText(w.lost), sizeText(BufferBytes)), now)
	w.lost, w.lostN = 0, 0
}

func (w *Writer) queue(stream, text string, now time.Time) {
	if len(w.pending) == 0 {
		w.oldest = now
	}
	w.seq++
	w.pending = append(w.pending, Line{JobID: w.jobID, Attempt: w.attempt, Seq: w.seq, Stream: stream, Time: now, Text: text})
	w.pendingB += len(text)
	w.buffered += int64(len(text))
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Dropped returns how many bytes of text were not kept: past MaxBytes, on a full buffer while
// the broker was away, or written after Close.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Close writes the notices (the cut, lines lost), sends what is left and the attempt's End,
// and waits for the broker's confirms, as long as ctx allows. Then the Writer is done: an error
// says how many lines RabbitMQ never confirmed, and why.
func (w *Writer) Close(ctx context.Context) error {
	w.finish()
	w.signal()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
	}
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.finished {
		cause := w.lastErr
		if cause == nil {
			cause = ctx.Err()
		}
		return fmt.Errorf("log of %s attempt %d: %d lines not confirmed by RabbitMQ: %w", w.jobID, w.attempt, w.unsent, cause)
	}
	return nil
}

// finish writes the closing notices and stops taking lines.
func (w *Writer) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	now := time.Now().UTC()
	w.noticeLost(now)
	if w.cut > 0 {
		w.queue(StreamGpujobs, fmt.Sprintf("log cut at %s: %d more bytes not kept", sizeText(w.lim.MaxBytes), w.cut), now)
	}
	w.closing = true
}

// run sends batches until the last one (with the End) is confirmed or Close gives up.
func (w *Writer) run() {
	defer close(w.done)
	var s sender
	defer s.close()
	for {
		msg, ok := w.next()
		if !ok {
			return
		}
		body := EncodeMessage(msg)
		backoff := minBackoff
		failing := false
		for {
			err := s.send(w, msg.ID(), body, msg.End != nil)
			if err == nil {
				break
			}
			w.mu.Lock()
			w.lastErr = err
			w.freed() // waiting Writes give up: the broker is away
			w.mu.Unlock()
			if !failing {
				failing = true
				w.p.logger.Warn("job log not taken by RabbitMQ; retrying", zap.String("job_id", w.jobID), zap.Int("attempt", w.attempt), zap.Error(err))
			}
			select {
			case <-w.ctx.Done():
				w.giveUp(len(msg.Lines))
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
		if failing {
			w.p.logger.Info("job log taken by RabbitMQ again", zap.String("job_id", w.jobID), zap.Int("attempt", w.attempt))
		}
		w.mu.Lock()
		w.lastErr = nil
		for _, l := range msg.Lines {
			w.buffered -= int64(len(l.Text))
		}
		w.freed()
		w.mu.Unlock()
		if msg.End != nil {
			w.mu.Lock()
			w.finished = true
			w.mu.Unlock()
			return
		}
	}
}

// giveUp counts the lines that will never be sent.
func (w *Writer) giveUp(inFlight int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unsent = int64(inFlight + len(w.pending))
	w.pending = nil
}

// next waits for the next message: a full batch, a batch whose first line has waited
// BatchDelay, or, once Close was called, the rest with the End. ok is false when Close gave up.
func (w *Writer) next() (Message, bool) {
	for {
		w.mu.Lock()
		n := len(w.pending)
		if w.closing || n >= BatchLines || w.pendingB >= BatchBytes || (n > 0 && time.Since(w.oldest) >= BatchDelay) {
			k, size := 0, 0
			for k < n && k < BatchLines && size < BatchBytes {
				size += len(w.pending[k].Text)
				k++
			}
			m := Message{JobID: w.jobID, Attempt: w.attempt, Lines: w.pending[:k:k]}
			w.pending = w.pending[k:]
			w.pendingB -= size
			if len(w.pending) > 0 {
				w.oldest = w.pending[0].Time
			} else {
				w.pending = nil
			}
			if w.closing && len(w.pending) == 0 {
				m.End = &End{JobID: w.jobID, Attempt: w.attempt, EndSeq: w.seq, Time: time.Now().UTC()}
			}
			w.mu.Unlock()
			if len(m.Lines) > 0 || m.End != nil {
				return m, true
			}
			continue
		}
		var timer <-chan time.Time
		if n > 0 {
			timer = time.After(BatchDelay - time.Since(w.oldest))
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-timer:
		case <-w.ctx.Done():
			w.giveUp(0)
			return Message{}, false
		}
	}
}

// sender is a Writer's channel: one message in flight, then its confirm.
type sender struct {
	ch      *amqp.Channel
	returns chan amqp.Return
}

func (s *sender) send(w *Writer, id string, body []byte, last bool) error {
	if s.ch == nil || s.ch.IsClosed() {
		s.close()
		ch, returns, err := w.p.channel()
		if err != nil {
			return err
		}
		s.ch, s.returns = ch, returns
	}
	ctx, cancel := context.WithTimeout(w.ctx, confirmTimeout)
	defer cancel()
	typ := "gpujobs.log"
	if last {
		typ = "gpujobs.log.end"
	}
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, "", w.p.cfg.Queue, true, false, amqp.Publishing{
		ContentType:  "application/x-ndjson",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    time.Now(),
		Type:         typ,
		Body:         body,
	})
	if err != nil {
		s.close()
		return fmt.Errorf("publish %s: %w", id, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		s.close() // a confirm may still come on this channel: a fresh one keeps it simple
		return fmt.Errorf("wait for the confirm of %s: %w", id, err)
	}
	// A mandatory message that no queue took is returned before its ack.
	select {
	case r := <-s.returns:
		s.close() // the queue is gone: the next channel's connection declares it again
		w.p.dropConnection()
		return fmt.Errorf("publish %s: not routed to %s (%d %s)", r.MessageId, w.p.cfg.Queue, r.ReplyCode, r.ReplyText)
	default:
	}
	if !acked {
		return fmt.Errorf("RabbitMQ refused %s (nack: is %s full?)", id, w.p.cfg.Queue)
	}
	return nil
}

func (s *sender) close() {
	if s.ch != nil {
		s.ch.Close()
	}
	s.ch, s.returns = nil, nil
}

// dropConnection forgets the connection, so the next channel dials and declares again.
func (p *Publisher) dropConnection() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

// sizeText writes 64 MiB as "64 MiB" (whole units) and other sizes with one decimal.
func sizeText(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift {
			if n%(1<<u.shift) == 0 {
				return fmt.Sprintf("%d %s", n>>u.shift, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(int64(1)<<u.shift), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
